#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <stdexcept>

#include "env/pci.hh"
#include "env/thread.hh"
#include "env/vfio.hh"
#include "nvme/pcie.hh"

namespace ferry::nvme {

namespace {

constexpr uint16_t admin_entries = 32;
constexpr uint32_t admin_cq_offset = 4096;
constexpr uint32_t admin_data_offset = 8192;
constexpr uint16_t io_queues_wanted = 64;

// BAR0 of a VFIO device; owns the device so the mapping lives as long as the registers.
class bar_registers final : public register_file {
public:
    bar_registers(volatile uint8_t* bar, size_t size, std::unique_ptr<env::vfio_device> dev = nullptr)
        : _bar(bar), _size(size), _dev(std::move(dev)) {}
    uint32_t read32(uint32_t off) override { return *reinterpret_cast<volatile uint32_t*>(_bar + off); }
    void write32(uint32_t off, uint32_t v) override { *reinterpret_cast<volatile uint32_t*>(_bar + off) = v; }
    volatile uint32_t* doorbell(uint32_t off) override {
        if (off + 4 > _size)
            throw std::runtime_error(fmt::format("doorbell {:#x} beyond BAR0 ({:#x} bytes)", off, _size));
        return reinterpret_cast<volatile uint32_t*>(_bar + off);
    }

private:
    volatile uint8_t* _bar;
    size_t _size;
    std::unique_ptr<env::vfio_device> _dev;
};

// Reads CSTS every millisecond until done(csts) or `timeout_ms` passed; false on timeout.
// `csts` is the last value read. Throws if the device is gone (CSTS reads all ones).
template <class Done>
bool poll_csts(register_file& regs, const std::string& name, uint32_t timeout_ms, Done done, uint32_t& csts) {
    const uint64_t deadline = env::now_ns() + uint64_t{timeout_ms} * 1000000;
    for (;;) {
        csts = regs.read32(pcie_reg::csts);
        if (csts == 0xFFFFFFFF)
            throw std::runtime_error(fmt::format("controller {}: CSTS reads all ones: the device is gone", name));
        if (done(csts)) return true;
        if (env::now_ns() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

std::string trimmed(const char* s, size_t n) {
    std::string out(s, strnlen(s, n));
    while (!out.empty() && (out.back() == ' ' || out.back() == '\0')) out.pop_back();
    return out;
}

}  // namespace

// ---------------------------------------------------------------- hw_queue

hw_queue::hw_queue(pcie_controller& c, uint16_t qid, uint16_t entries)
    : _ctrl(c),
      _qid(qid),
      _entries(entries),
      _region(size_t{entries} * 4096 + (size_t{entries} * sizeof(sqe) + 4095) / 4096 * 4096 +
                  (size_t{entries} * sizeof(cqe) + 4095) / 4096 * 4096,
              fmt::format("{} I/O queue {}", c.name(), qid)) {
    const size_t sq_bytes = (size_t{entries} * sizeof(sqe) + 4095) / 4096 * 4096;
    const size_t cq_bytes = (size_t{entries} * sizeof(cqe) + 4095) / 4096 * 4096;
    _cq_offset = sq_bytes;
    _lists = sq_bytes + cq_bytes;
    auto* sq = reinterpret_cast<sqe*>(_region.data());
    auto* cq = reinterpret_cast<cqe*>(_region.data() + sq_bytes);
    _ring = queue_pair(qid, entries, sq, cq, c.sq_doorbell(qid), c.cq_doorbell(qid));
}

hw_queue::~hw_queue() {
    // Owners delete through begin_delete(), whose job holds a reference: reaching here with the
    // queue still on a live device is a bug, and its memory is about to be freed under it.
    if (_created && _ctrl.state() == controller_state::live && _ctrl.generation() == _generation) {
        _ctrl.reset_now(fmt::format("I/O queue {} freed while the device still had it", _qid));
    }
    if (!_qid_released) _ctrl.release_qid(_qid);
}

std::shared_ptr<admin_op> hw_queue::begin_create() {
    auto op = std::make_shared<admin_op>();
    // The device forgot the queue (first creation, or a reset that disabled it): empty rings.
    _ring.restart();
    const uint64_t sq_iova = _region.iova(_region.data()), cq_iova = _region.iova(_region.data() + _cq_offset);
    _ctrl.post([self = shared_from_this(), op, sq_iova, cq_iova] {
        auto& c = self->_ctrl;
        if (c.state() != controller_state::live)
            return op->finish(false, fmt::format("controller {} is not live", c.name()));
        // On the admin thread the generation cannot change under us: resets run here too.
        const uint32_t gen = c.generation();
        const uint16_t st = c.create_pair(self->_qid, self->_entries, sq_iova, cq_iova);
        if (st != sc::success)
            return op->finish(
                false, fmt::format("controller {}: creating I/O queue {}: {}", c.name(), self->_qid, status_name(st)));
        self->_generation = gen;
        self->_created = true;
        op->finish(true);
    });
    return op;
}

std::shared_ptr<admin_op> hw_queue::begin_delete() {
    auto op = std::make_shared<admin_op>();
    _ctrl.post([self = shared_from_this(), op] {
        auto& c = self->_ctrl;
        if (self->_created && c.state() == controller_state::live && c.generation() == self->_generation) {
            if (!c.delete_pair(self->_qid)) {
                // The device may still own the queue's memory: only a disabled controller is safe.
                c.reset_now(fmt::format("deleting I/O queue {} failed", self->_qid));
            }
        }
        self->_created = false;
        // Gone from the device (or the device reset): the qid is free now, not when this job's
        // reference to the queue drops after finish() (a create right after the delete found
        // every qid in use, seen once under ThreadSanitizer).
        c.release_qid(self->_qid);
        self->_qid_released = true;
        op->finish(true);
    });
    return op;
}

// ---------------------------------------------------------------- pcie_controller

pcie_controller::pcie_controller(std::string name, std::unique_ptr<register_file> regs, pcie_controller_options opts)
    : _name(std::move(name)),
      _regs(std::move(regs)),
      _opts(opts),
      _id(std::make_unique<identify_ctrl>()),
      _admin_mem(admin_data_offset + 4096, _name + " admin queue") {}

pcie_controller::~pcie_controller() {
    try {
        shutdown();
    } catch (const std::exception& e) {
        spdlog::error("controller {}: shutdown: {}", _name, e.what());
    }
}

void pcie_controller::disable() {
    const uint32_t timeout = std::max<uint32_t>(pcie_reg::cap_to_ms(_cap), 500);
    uint32_t csts;
    auto wait_rdy = [&](uint32_t want) {
        return poll_csts(
            *_regs, _name, timeout, [&](uint32_t v) { return (v & pcie_reg::csts_rdy) == want; }, csts);
    };
    uint32_t cc = _regs->read32(pcie_reg::cc);
    if ((cc & pcie_reg::cc_en) && !_started)
        spdlog::warn("controller {}: found enabled (its last owner did not shut it down): resetting it", _name);
    if (cc & pcie_reg::cc_en) {
        // Never clear EN while an enable is still in progress (EN=1, RDY=0).
        wait_rdy(1);
        _regs->write32(pcie_reg::cc, cc & ~pcie_reg::cc_en);
    }
    if (!wait_rdy(0))
        throw std::runtime_error(
            fmt::format("controller {}: CSTS.RDY still 1 {} ms after clearing CC.EN", _name, timeout));
}

void pcie_controller::read_capabilities() {
    _cap = _regs->read64(pcie_reg::cap);
    if (_cap == ~0ull)
        throw std::runtime_error(fmt::format("controller {}: CAP reads all ones: the device is gone", _name));
    if (pcie_reg::cap_mpsmin(_cap) > 0)
        throw std::runtime_error(fmt::format("controller {}: minimum memory page size {} KiB exceeds the host's 4 KiB",
                                             _name, 4u << pcie_reg::cap_mpsmin(_cap)));
    _stride = 4u << pcie_reg::cap_dstrd(_cap);
    _mqes = static_cast<uint16_t>(std::min<uint32_t>(pcie_reg::cap_mqes(_cap) + 1, 4096));
}

void pcie_controller::enable() {
    disable();

    std::memset(_admin_mem.data(), 0, admin_data_offset);
    _regs->write32(pcie_reg::aqa, (uint32_t{admin_entries - 1} << 16) | (admin_entries - 1));
    _regs->write64(pcie_reg::asq, _admin_mem.iova(_admin_mem.data()));
    _regs->write64(pcie_reg::acq, _admin_mem.iova(_admin_mem.data() + admin_cq_offset));
    _admin = queue_pair(0, admin_entries, reinterpret_cast<sqe*>(_admin_mem.data()),
                        reinterpret_cast<cqe*>(_admin_mem.data() + admin_cq_offset), sq_doorbell(0), cq_doorbell(0));
    // CSS 000 (NVM command set), MPS 0 (4 KiB), round robin, 64-byte SQEs and 16-byte CQEs.
    _regs->write32(pcie_reg::cc, pcie_reg::cc_iosqes | pcie_reg::cc_iocqes | pcie_reg::cc_en);
    const uint32_t timeout = std::max<uint32_t>(pcie_reg::cap_to_ms(_cap), 500);
    uint32_t csts;
    if (!poll_csts(
            *_regs, _name, timeout, [](uint32_t v) { return v & (pcie_reg::csts_rdy | pcie_reg::csts_cfs); }, csts))
        throw std::runtime_error(fmt::format("controller {}: not ready {} ms after CC.EN (CAP.TO)", _name, timeout));
    if (csts & pcie_reg::csts_cfs)
        throw std::runtime_error(fmt::format("controller {}: fatal status (CSTS.CFS) while enabling", _name));

    sqe nq{};
    nq.opcode = admin_opc::set_features;
    nq.cdw10 = fid::num_queues;
    nq.cdw11 = (uint32_t{io_queues_wanted - 1} << 16) | (io_queues_wanted - 1);
    cqe c{};
    uint16_t st = execute_admin(nq, &c);
    if (st != sc::success)
        throw std::runtime_error(
            fmt::format("controller {}: Set Features Number of Queues: {}", _name, status_name(st)));
    const auto granted =
        static_cast<uint16_t>(std::min<uint32_t>({(c.dw0 & 0xFFFF) + 1u, (c.dw0 >> 16) + 1u, io_queues_wanted}));
    if (!_started) {
        // First start. Reactors read _granted (and the CAP fields) without a lock: after the
        // admin thread starts they never change; after a reset the owners keep their qids.
        _granted = granted;
        std::lock_guard g(_qid_lock);
        _qid_used.assign(_granted + 1u, false);
        _qid_used[0] = true;
    } else if (granted < _granted) {
        spdlog::warn("controller {}: after the reset only {} of {} I/O queues granted; re-creating the others fails",
                     _name, granted, _granted);
    }
    _state.store(controller_state::live, std::memory_order_release);
}

void pcie_controller::start() {
    read_capabilities();
    enable();
    if (uint16_t st = identify(cns::ctrl, 0, _id.get()); st != sc::success)
        throw std::runtime_error(fmt::format("controller {}: Identify Controller: {}", _name, status_name(st)));
    // MDTS is in units of the minimum page size; 0 means no limit. Capped at 1 MiB per command (the
    // PRP list and segs[] of pcie_store are sized for it); the target splits larger commands.
    _max_transfer = 1u << 20;
    if (_id->mdts)
        _max_transfer = static_cast<uint32_t>(
            std::min<uint64_t>(_max_transfer, (4096ull << pcie_reg::cap_mpsmin(_cap)) << _id->mdts));
    refresh_health();
    {
        std::lock_guard g(_jobs_lock);
        _stop = false;
        _admin_closed = false;
    }
    _started = true;
    _admin_thread = std::thread([this] { admin_loop(); });
    _admin_thread_id = _admin_thread.get_id();
    spdlog::info(
        "controller {}: {} serial {} firmware {}: MDTS {} KiB, {} I/O queues granted, up to {} entries each, "
        "doorbell stride {}",
        _name, trimmed(_id->mn, sizeof(_id->mn)), trimmed(_id->sn, sizeof(_id->sn)), trimmed(_id->fr, sizeof(_id->fr)),
        _max_transfer >> 10, _granted, _mqes, _stride);
}

void pcie_controller::shutdown() {
    if (!_started) return;
    {
        std::lock_guard g(_jobs_lock);
        _stop = true;
    }
    _jobs_cv.notify_all();
    if (_admin_thread.joinable()) _admin_thread.join();
    const controller_state before = state();
    // Queue owners: the device forgets every queue now; what is in flight fails (path error).
    _state.store(controller_state::failed, std::memory_order_release);
    _generation.fetch_add(1, std::memory_order_acq_rel);
    std::deque<std::function<void()>> late;  // posted while the admin thread was finishing
    {
        std::lock_guard g(_jobs_lock);
        late.swap(_jobs);
        _admin_closed = true;
    }
    for (auto& j : late) j();
    if (before == controller_state::live) {
        shut_down_device();
    } else if (before != controller_state::gone) {
        // A failed reset may have left the device enabled: the admin queue memory goes next.
        try {
            disable();
        } catch (const std::exception& e) {
            spdlog::error("controller {}: disabling at shutdown: {}", _name, e.what());
        }
    }
    _started = false;
}

void pcie_controller::shut_down_device() {
    uint32_t cc = _regs->read32(pcie_reg::cc);
    _regs->write32(pcie_reg::cc, (cc & ~(3u << 14)) | pcie_reg::cc_shn_normal);
    // RTD3E (us) says how long the device may need; at least 5 s, at most 60 s (as Linux).
    const auto limit_ms = static_cast<uint32_t>(std::clamp<uint32_t>(_id->rtd3e / 1000, _opts.shutdown_min_ms, 60000));
    uint32_t csts;
    auto complete = [](uint32_t v) { return (v & pcie_reg::csts_shst_mask) == pcie_reg::csts_shst_complete; };
    if (poll_csts(*_regs, _name, limit_ms, complete, csts)) {
        spdlog::info("controller {}: shut down cleanly", _name);
        return;
    }
    // A device that did not finish its shutdown may still be working through its queues: it
    // must not keep DMA going into queue and buffer memory its owners free next.
    spdlog::warn("controller {}: shutdown not complete after {} ms: disabling it (CC.EN=0)", _name, limit_ms);
    disable();
}

void pcie_controller::reset_now(const std::string& why) {
    on_admin_thread([&] {
        if (state() == controller_state::live) reset_controller(why);
        return uint16_t{0};
    });
}

uint16_t pcie_controller::execute_admin(sqe& cmd, cqe* out) {
    if (_admin.full()) return sc::internal_error;
    cmd.cid = _next_cid++;
    cmd.flags = 0;  // PRPs
    _admin.push(cmd);
    _admin.ring();
    const uint64_t deadline = env::now_ns() + uint64_t{_opts.admin_timeout_ms} * 1000000;
    bool done = false;
    uint16_t status = sc::internal_error;
    for (unsigned spins = 0; !done; ++spins) {
        _admin.reap([&](const cqe& c) {
            if (c.cid != cmd.cid) {
                spdlog::debug("controller {}: late admin completion cid {}", _name, +c.cid);
                return;
            }
            done = true;
            status = status_from_cqe(c.status);
            if (out) *out = c;
        });
        if (done) break;
        if (env::now_ns() > deadline) {
            spdlog::error("controller {}: admin command {:#04x} cid {} timed out after {} ms", _name, +cmd.opcode,
                          +cmd.cid, _opts.admin_timeout_ms);
            // The device may still carry it out (create a queue in memory we are about to
            // free): the admin thread resets the controller after the job at hand.
            _admin_timed_out = true;
            return sc::internal_error;
        }
        if (spins > 1000) {
            if (_regs->read32(pcie_reg::csts) == 0xFFFFFFFF) return sc::internal_error;
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    }
    return status;
}

void pcie_controller::post(std::function<void()> job) {
    {
        std::lock_guard g(_jobs_lock);
        if (!_admin_closed) {
            _jobs.push_back(std::move(job));
            _jobs_cv.notify_one();
            return;
        }
    }
    // No admin thread any more (shut down): the controller is not live, so the job does not
    // touch the device and only publishes its answer. Run it here rather than never.
    job();
}

uint16_t pcie_controller::on_admin_thread(const std::function<uint16_t()>& job) {
    if (!_started || std::this_thread::get_id() == _admin_thread_id.load()) return job();
    std::promise<uint16_t> result;
    auto f = result.get_future();
    post([&] { result.set_value(job()); });
    return f.get();
}

uint16_t pcie_controller::admin(sqe cmd, cqe* out) {
    return on_admin_thread(
        [&] { return state() == controller_state::live ? execute_admin(cmd, out) : uint16_t{sc::internal_error}; });
}

uint16_t pcie_controller::identify(uint8_t cns, uint32_t nsid, void* out) {
    sqe id{};
    id.opcode = admin_opc::identify;
    id.nsid = nsid;
    id.cdw10 = cns;
    uint8_t* page = _admin_mem.data() + admin_data_offset;
    id.sgl.address = _admin_mem.iova(page);
    const uint16_t st = execute_admin(id, nullptr);
    if (st == sc::success) std::memcpy(out, page, 4096);
    return st;
}

void pcie_controller::admin_loop() {
    env::name_current_thread("nvme-admin");
    for (;;) {
        std::deque<std::function<void()>> jobs;
        {
            std::unique_lock g(_jobs_lock);
            _jobs_cv.wait_for(g, std::chrono::milliseconds(_opts.health_interval_ms),
                              [&] { return _stop || !_jobs.empty(); });
            jobs.swap(_jobs);
            if (_stop && jobs.empty()) break;
        }
        for (auto& j : jobs) j();
        // Before the jobs (and the queue memory they hold) are released.
        if (_admin_timed_out && state() == controller_state::live) reset_controller("an admin command timed out");
        _admin_timed_out = false;
        health_check();
        if (env::now_ns() >= _next_health_ns && state() == controller_state::live) refresh_health();
    }
}

void pcie_controller::refresh_health() {
    _next_health_ns = env::now_ns() + uint64_t{_opts.smart_interval_ms} * 1000000;
    sqe get{};
    get.opcode = admin_opc::get_log_page;
    get.nsid = 0xFFFFFFFF;                                   // the controller as a whole
    get.cdw10 = lid::smart | (uint32_t{512 / 4 - 1} << 16);  // NUMDL: 128 dwords, 0-based
    uint8_t* page = _admin_mem.data() + admin_data_offset;
    std::memset(page, 0, 512);
    get.sgl.address = _admin_mem.iova(page);
    const uint16_t st = execute_admin(get, nullptr);
    if (st != sc::success) {
        if (!_health_failed)
            spdlog::warn("controller {}: SMART / Health Information log: {} (no device health reported)", _name,
                         status_name(st));
        _health_failed = true;
        return;
    }
    _health_failed = false;
    device_health h;
    auto u64 = [&](size_t off) {
        uint64_t v;
        std::memcpy(&v, page + off, 8);
        return v;
    };
    h.critical_warning = page[0];
    h.temperature_kelvin = static_cast<uint16_t>(page[1] | (page[2] << 8));
    h.available_spare = page[3];
    h.available_spare_threshold = page[4];
    h.percentage_used = page[5];
    h.media_errors = u64(160);       // Media and Data Integrity Errors, low half
    h.error_log_entries = u64(176);  // Number of Error Information Log Entries, low half
    std::lock_guard g(_health_lock);
    _health = h;
}

std::optional<device_health> pcie_controller::health() const {
    std::lock_guard g(_health_lock);
    return _health;
}

void pcie_controller::health_check() {
    const uint32_t csts = _regs->read32(pcie_reg::csts);
    if (csts == 0xFFFFFFFF) {
        if (state() != controller_state::gone) {
            _state.store(controller_state::gone, std::memory_order_release);
            _generation.fetch_add(1, std::memory_order_acq_rel);
            spdlog::error(
                "controller {}: the device is gone (CSTS reads all ones); its commands fail with a path error", _name);
        }
        return;
    }
    if ((csts & pcie_reg::csts_cfs) && state() == controller_state::live)
        reset_controller("controller fatal status (CSTS.CFS)");
}

void pcie_controller::reset_controller(const std::string& why) {
    spdlog::warn("controller {}: resetting: {}", _name, why);
    _state.store(controller_state::resetting, std::memory_order_release);
    try {
        disable();
        // Only now is the device quiet: owners may fail (and reuse the buffers of) what was in flight.
        _generation.fetch_add(1, std::memory_order_acq_rel);
        enable();
        spdlog::info("controller {}: reset done; I/O queues are re-created by their owners", _name);
    } catch (const std::exception& e) {
        _generation.fetch_add(1, std::memory_order_acq_rel);
        _state.store(controller_state::failed, std::memory_order_release);
        spdlog::error("controller {}: reset failed: {}", _name, e.what());
    }
}

void pcie_controller::request_abort(uint16_t qid, uint16_t cid) {
    post([this, qid, cid] {
        sqe a{};
        a.opcode = admin_opc::abort;
        a.cdw10 = qid | (uint32_t{cid} << 16);
        cqe c{};
        uint16_t st = execute_admin(a, &c);
        spdlog::warn("controller {}: Abort of queue {} cid {}: {}{}", _name, qid, cid, status_name(st),
                     st == sc::success && (c.dw0 & 1) ? " (not aborted)" : "");
    });
}

void pcie_controller::request_reset(const std::string& why) {
    post([this, why] {
        if (state() == controller_state::live) reset_controller(why);
    });
}

pcie_namespace_info pcie_controller::namespace_info(uint32_t nsid) {
    auto data = std::make_unique<identify_ns>();
    pcie_namespace_info info;
    const uint16_t st = on_admin_thread([&] { return identify(cns::ns, nsid, data.get()); });
    if ((st & ~status_dnr) == sc::invalid_namespace) return info;  // beyond NN: not active
    if (st != sc::success)
        throw std::runtime_error(fmt::format("controller {}: Identify Namespace {}: {}", _name, nsid, status_name(st)));
    if (data->nsze == 0) return info;
    const auto& lbaf = data->lbaf[data->flbas & 0xF];
    if (lbaf.ms)
        throw std::runtime_error(fmt::format(
            "controller {} namespace {}: LBA format with {} metadata bytes is not supported", _name, nsid, lbaf.ms));
    info.blocks = data->nsze;
    info.block_size = 1u << lbaf.lbads;
    info.dlfeat = data->dlfeat;
    return info;
}

uint16_t pcie_controller::create_pair(uint16_t qid, uint16_t entries, uint64_t sq_iova, uint64_t cq_iova) {
    sqe cq{};
    cq.opcode = admin_opc::create_cq;
    cq.sgl.address = cq_iova;
    cq.cdw10 = qid | (uint32_t{entries - 1u} << 16);
    cq.cdw11 = 1;  // physically contiguous, interrupts off: the owner polls
    uint16_t st = admin(cq);
    if (st != sc::success) return st;
    sqe sq{};
    sq.opcode = admin_opc::create_sq;
    sq.sgl.address = sq_iova;
    sq.cdw10 = qid | (uint32_t{entries - 1u} << 16);
    sq.cdw11 = 1 | (uint32_t{qid} << 16);  // contiguous, CQ qid
    st = admin(sq);
    if (st != sc::success) {
        sqe del{};
        del.opcode = admin_opc::delete_cq;
        del.cdw10 = qid;
        admin(del);
    }
    return st;
}

bool pcie_controller::delete_pair(uint16_t qid) {
    sqe del{};
    del.opcode = admin_opc::delete_sq;
    del.cdw10 = qid;
    uint16_t st = admin(del);
    if (st != sc::success) spdlog::warn("controller {}: Delete I/O SQ {}: {}", _name, qid, status_name(st));
    const bool sq_gone = st == sc::success;
    del.opcode = admin_opc::delete_cq;
    st = admin(del);
    if (st != sc::success) spdlog::warn("controller {}: Delete I/O CQ {}: {}", _name, qid, status_name(st));
    return sq_gone && st == sc::success;
}

void pcie_controller::release_qid(uint16_t qid) {
    std::lock_guard g(_qid_lock);
    if (qid < _qid_used.size()) _qid_used[qid] = false;
}

std::shared_ptr<hw_queue> pcie_controller::create_queue(uint16_t entries, std::shared_ptr<admin_op>& created) {
    if (state() != controller_state::live)
        throw std::runtime_error(fmt::format("controller {} is not available (device gone or failed)", _name));
    entries = std::clamp<uint16_t>(entries, 2, _mqes);
    uint16_t qid = 0;
    {
        std::lock_guard g(_qid_lock);
        for (uint16_t q = 1; q < _qid_used.size(); ++q)
            if (!_qid_used[q]) {
                qid = q;
                _qid_used[q] = true;
                break;
            }
        if (!qid)
            throw std::runtime_error(
                fmt::format("controller {}: no hardware I/O queue left (all {} in use)", _name, _granted));
    }
    std::shared_ptr<hw_queue> q;
    try {
        q.reset(new hw_queue(*this, qid, entries));
    } catch (...) {
        release_qid(qid);
        throw;
    }
    created = q->begin_create();  // on failure the owner drops the queue; ~hw_queue releases the qid
    return q;
}

// ---------------------------------------------------------------- registry

namespace {
struct controller_registry {
    std::mutex lock;
    std::map<std::string, std::weak_ptr<pcie_controller>> open;
};
controller_registry& registry() {
    static controller_registry r;
    return r;
}
}  // namespace

void register_pcie_controller(const std::string& bdf, const std::shared_ptr<pcie_controller>& ctrl) {
    auto& r = registry();
    std::lock_guard g(r.lock);
    r.open[bdf] = ctrl;
}

std::shared_ptr<pcie_controller> open_pcie_controller(const std::string& bdf) {
    auto& r = registry();
    std::lock_guard g(r.lock);
    auto& open = r.open;
    if (auto c = open[bdf].lock()) return c;
    const auto pci = env::read_pci_device(bdf);  // throws if there is no such device
    if ((pci.class_code & 0xFFFFFF) != env::nvme_class_code)
        throw std::runtime_error(fmt::format("{}: PCI class {:#08x} is not an NVMe controller ({:#08x})", bdf,
                                             pci.class_code, env::nvme_class_code));
    auto dev = std::make_unique<env::vfio_device>(bdf);
    auto* bar = dev->bar0();
    size_t size = dev->bar0_size();
    auto c = std::make_shared<pcie_controller>(bdf, std::make_unique<bar_registers>(bar, size, std::move(dev)));
    c->start();
    open[bdf] = c;
    return c;
}

}  // namespace ferry::nvme
