// A software NVMe PCIe controller for driver tests: registers, doorbells, admin and I/O
// queues in host memory, PRP walking, a RAM medium. Device addresses are virtual addresses
// (no VFIO mapper is installed in unit tests, so dma_region IOVA = VA). A worker thread
// plays the device: it watches the doorbells and answers like a controller would. Knobs
// make it misbehave: drop I/O commands, raise CSTS.CFS, vanish (registers read all ones).
#pragma once

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "nvme/pcie.hh"
#include "nvme/spec.hh"

namespace ferry::test {

class nvme_model final : public nvme::register_file {
public:
    struct params {
        uint64_t blocks = 4096;
        uint8_t lbads = 12;
        uint16_t mqes = 63;  // 0-based
        uint8_t mdts = 5;    // 128 KiB
        uint16_t queues = 4;
        uint32_t namespaces = 1;  // each `blocks` long, one after the other on the medium
        uint16_t oncs = 0x0D;     // Compare, DSM, Write Zeroes
        uint8_t dlfeat = 0x09;
    };

    explicit nvme_model(params p) : _p(p), _media((p.blocks << p.lbads) * p.namespaces) {
        _regs.fill(0);
        uint64_t cap = p.mqes | (1ull << 16) /*CQR*/ | (2ull << 24) /*TO 1 s*/ | (1ull << 37) /*NVM*/;
        std::memcpy(&_regs[0], &cap, 8);
        _regs[2] = 0x00010400;
        _thread = std::thread([this] { run(); });
    }
    nvme_model() : nvme_model(params{}) {}
    ~nvme_model() override {
        _stop = true;
        _thread.join();
    }

    // ---- register_file
    uint32_t read32(uint32_t off) override {
        if (_gone) return 0xFFFFFFFF;
        std::lock_guard g(_lock);
        return _regs[off / 4];
    }
    void write32(uint32_t off, uint32_t v) override {
        if (_gone) return;
        std::lock_guard g(_lock);
        if (off == nvme::pcie_reg::cc) {
            const uint32_t old = _regs[off / 4];
            _regs[off / 4] = v;
            if ((v & 1) && !(old & 1)) enable();
            if (!(v & 1) && (old & 1)) disable();
            if (((v >> 14) & 3) == 1 && !ignore_shutdown) {
                _regs[nvme::pcie_reg::csts / 4] =
                    (_regs[nvme::pcie_reg::csts / 4] & ~0xCu) | nvme::pcie_reg::csts_shst_complete;
                ++shutdowns;
            }
            return;
        }
        _regs[off / 4] = v;
    }
    volatile uint32_t* doorbell(uint32_t off) override { return &_doorbells[(off - 0x1000) / 4]; }

    // ---- knobs and observations
    std::atomic<bool> drop_io{false};  // swallow I/O commands (no completion)
    // Leave the admin queue alone (firmware busy) until cleared or the controller is disabled.
    std::atomic<bool> stall_admin{false};
    std::atomic<bool> ignore_shutdown{false};  // CC.SHN never completes
    std::atomic<bool> fail_delete{false};      // Delete I/O SQ fails (the queue stays)
    std::atomic<unsigned> aborts{0};           // Abort commands seen
    std::atomic<unsigned> disables{0};         // CC.EN 1 -> 0 transitions
    std::atomic<unsigned> shutdowns{0};        // CC.SHN normal
    std::atomic<unsigned> io_commands{0};
    void raise_fatal() {
        std::lock_guard g(_lock);
        _regs[nvme::pcie_reg::csts / 4] |= nvme::pcie_reg::csts_cfs;
    }
    void vanish() { _gone = true; }
    // What Get Log Page SMART / Health Information (02h) reports.
    void set_smart(const nvme::device_health& h) {
        std::lock_guard g(_lock);
        _smart = h;
    }
    std::atomic<unsigned> smart_reads{0};
    bool enabled() {
        std::lock_guard g(_lock);
        return _regs[nvme::pcie_reg::cc / 4] & nvme::pcie_reg::cc_en;
    }
    uint8_t* media(uint32_t nsid = 1) { return _media.data() + (uint64_t{nsid - 1} * _p.blocks << _p.lbads); }
    // Admin commands the host has queued that the model has not taken yet (stall_admin holds them).
    size_t admin_commands_waiting() {
        std::lock_guard g(_lock);
        if (_sqs.empty() || !_sqs[0].base) return 0;
        const uint32_t tail = __atomic_load_n(&_doorbells[0], __ATOMIC_ACQUIRE);
        return (tail + _sqs[0].size - _sqs[0].head) % _sqs[0].size;
    }
    size_t live_io_queues() {
        std::lock_guard g(_lock);
        size_t n = 0;
        for (size_t q = 1; q < _sqs.size(); ++q) n += _sqs[q].base != nullptr;
        return n;
    }

private:
    struct sq_state {
        nvme::sqe* base = nullptr;
        uint16_t size = 0, head = 0, cqid = 0;
    };
    struct cq_state {
        nvme::cqe* base = nullptr;
        uint16_t size = 0, tail = 0;
        uint8_t phase = 1;
    };

    void enable() {
        const uint32_t aqa = _regs[nvme::pcie_reg::aqa / 4];
        uint64_t asq, acq;
        std::memcpy(&asq, &_regs[nvme::pcie_reg::asq / 4], 8);
        std::memcpy(&acq, &_regs[nvme::pcie_reg::acq / 4], 8);
        _sqs.assign(_p.queues + 1u, {});
        _cqs.assign(_p.queues + 1u, {});
        _sqs[0] = {reinterpret_cast<nvme::sqe*>(asq), static_cast<uint16_t>((aqa & 0xFFF) + 1), 0, 0};
        _cqs[0] = {reinterpret_cast<nvme::cqe*>(acq), static_cast<uint16_t>(((aqa >> 16) & 0xFFF) + 1), 0, 1};
        for (auto& d : _doorbells) __atomic_store_n(&d, 0u, __ATOMIC_RELAXED);  // the driver may write them meanwhile
        _regs[nvme::pcie_reg::csts / 4] = nvme::pcie_reg::csts_rdy;
    }
    void disable() {
        stall_admin = false;  // a reset unsticks the firmware
        _sqs.clear();
        _cqs.clear();
        _dropped.clear();
        _regs[nvme::pcie_reg::csts / 4] = 0;
        ++disables;
    }

    void run() {
        while (!_stop) {
            bool busy = false;
            {
                std::lock_guard g(_lock);
                if (!_gone && (_regs[nvme::pcie_reg::csts / 4] & nvme::pcie_reg::csts_rdy) &&
                    !(_regs[nvme::pcie_reg::csts / 4] & nvme::pcie_reg::csts_cfs)) {
                    for (size_t q = stall_admin ? 1 : 0; q < _sqs.size(); ++q)
                        busy |= service(static_cast<uint16_t>(q));
                }
            }
            if (!busy) std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }

    bool service(uint16_t qid) {
        auto& sq = _sqs[qid];
        if (!sq.base) return false;
        const uint32_t tail = __atomic_load_n(&_doorbells[2 * qid], __ATOMIC_ACQUIRE);
        bool did = false;
        while (sq.head != tail) {
            auto& cq = _cqs[sq.cqid];
            const uint32_t cq_head = __atomic_load_n(&_doorbells[2 * sq.cqid + 1], __ATOMIC_ACQUIRE);
            if ((cq.tail + 1u) % cq.size == cq_head) break;  // CQ full: wait for the host
            nvme::sqe cmd;
            std::memcpy(&cmd, &sq.base[sq.head], sizeof(cmd));
            sq.head = static_cast<uint16_t>((sq.head + 1) % sq.size);
            uint32_t dw0 = 0;
            uint16_t status = qid == 0 ? admin(cmd, dw0) : io(cmd, qid);
            if (status == 0xFFFF) {  // dropped
                _dropped.push_back({qid, static_cast<uint16_t>(cmd.cid)});
                did = true;
                continue;
            }
            complete(qid, cmd.cid, status, dw0);
            did = true;
        }
        return did;
    }

    void complete(uint16_t qid, uint16_t cid, uint16_t status, uint32_t dw0) {
        auto& sq = _sqs[qid];
        auto& cq = _cqs[sq.cqid];
        nvme::cqe c{};
        c.dw0 = dw0;
        c.sqhd = sq.head;
        c.sqid = qid;
        c.cid = cid;
        c.status = static_cast<uint16_t>(nvme::cqe_status(status) | cq.phase);
        // Write the entry with the phase last, as a device's single DMA write would appear.
        auto* slot = &cq.base[cq.tail];
        std::memcpy(slot, &c, 14);
        __atomic_store_n(&slot->status, c.status, __ATOMIC_RELEASE);
        if (++cq.tail == cq.size) {
            cq.tail = 0;
            cq.phase ^= 1;
        }
    }

    uint16_t admin(const nvme::sqe& c, uint32_t& dw0) {
        const uint16_t qid = c.cdw10 & 0xFFFF;
        const uint16_t size = static_cast<uint16_t>((c.cdw10 >> 16) + 1);
        switch (c.opcode) {
            case nvme::admin_opc::identify: {
                auto* out = reinterpret_cast<uint8_t*>(c.sgl.address);
                std::memset(out, 0, 4096);
                if ((c.cdw10 & 0xFF) == nvme::cns::ctrl) {
                    auto* id = reinterpret_cast<nvme::identify_ctrl*>(out);
                    id->vid = 0x1b36;
                    std::memcpy(id->mn, "ferry model", 11);
                    std::memcpy(id->sn, "model-1", 7);
                    id->mdts = _p.mdts;
                    id->nn = _p.namespaces;
                    id->oncs = _p.oncs;
                    return 0;
                }
                if ((c.cdw10 & 0xFF) == nvme::cns::ns) {
                    if (c.nsid == 0 || c.nsid > _p.namespaces) return nvme::sc::invalid_namespace;
                    auto* id = reinterpret_cast<nvme::identify_ns*>(out);
                    id->nsze = id->ncap = id->nuse = _p.blocks;
                    id->lbaf[0].lbads = _p.lbads;
                    id->dlfeat = _p.dlfeat;
                    return 0;
                }
                return nvme::sc::invalid_field;
            }
            case nvme::admin_opc::get_log_page: {
                if ((c.cdw10 & 0xFF) != nvme::lid::smart || c.nsid != 0xFFFFFFFF) return nvme::sc::invalid_field;
                const size_t len = ((c.cdw10 >> 16) + 1u) * 4;
                if (len > 4096) return nvme::sc::invalid_field;
                uint8_t page[512] = {};
                page[0] = _smart.critical_warning;
                page[1] = static_cast<uint8_t>(_smart.temperature_kelvin);
                page[2] = static_cast<uint8_t>(_smart.temperature_kelvin >> 8);
                page[3] = _smart.available_spare;
                page[4] = _smart.available_spare_threshold;
                page[5] = _smart.percentage_used;
                std::memcpy(page + 160, &_smart.media_errors, 8);
                std::memcpy(page + 176, &_smart.error_log_entries, 8);
                std::memcpy(reinterpret_cast<uint8_t*>(c.sgl.address), page, std::min(len, sizeof(page)));
                ++smart_reads;
                return 0;
            }
            case nvme::admin_opc::set_features:
                if ((c.cdw10 & 0xFF) != nvme::fid::num_queues) return nvme::sc::invalid_field;
                dw0 = (uint32_t{_p.queues - 1u} << 16) | (_p.queues - 1u);
                return 0;
            case nvme::admin_opc::create_cq:
                if (qid == 0 || qid > _p.queues || _cqs[qid].base) return nvme::sc::invalid_queue_id;
                if (size < 2 || size > _p.mqes + 1u) return nvme::sc::invalid_queue_size;
                _cqs[qid] = {reinterpret_cast<nvme::cqe*>(c.sgl.address), size, 0, 1};
                return 0;
            case nvme::admin_opc::create_sq: {
                const uint16_t cqid = c.cdw11 >> 16;
                if (qid == 0 || qid > _p.queues || _sqs[qid].base) return nvme::sc::invalid_queue_id;
                if (size < 2 || size > _p.mqes + 1u) return nvme::sc::invalid_queue_size;
                if (cqid > _p.queues || !_cqs[cqid].base) return 0x100;  // completion queue invalid
                _sqs[qid] = {reinterpret_cast<nvme::sqe*>(c.sgl.address), size, 0, cqid};
                __atomic_store_n(&_doorbells[2 * qid], 0u, __ATOMIC_RELEASE);
                return 0;
            }
            case nvme::admin_opc::delete_sq:
                if (qid == 0 || qid > _p.queues || !_sqs[qid].base) return nvme::sc::invalid_queue_id;
                if (fail_delete) return nvme::sc::internal_error;
                _sqs[qid] = {};
                return 0;
            case nvme::admin_opc::delete_cq:
                if (qid == 0 || qid > _p.queues || !_cqs[qid].base) return nvme::sc::invalid_queue_id;
                for (auto& s : _sqs)
                    if (s.base && s.cqid == qid && &s != &_sqs[0]) return 0x10C;  // invalid queue deletion
                _cqs[qid] = {};
                __atomic_store_n(&_doorbells[2 * qid + 1], 0u, __ATOMIC_RELEASE);
                return 0;
            case nvme::admin_opc::abort: {
                ++aborts;
                const uint16_t sqid = c.cdw10 & 0xFFFF, cid = c.cdw10 >> 16;
                for (size_t i = 0; i < _dropped.size(); ++i)
                    if (_dropped[i].first == sqid && _dropped[i].second == cid && abortable) {
                        complete(sqid, cid, nvme::sc::aborted_by_request, 0);
                        _dropped.erase(_dropped.begin() + static_cast<long>(i));
                        dw0 = 0;
                        return 0;
                    }
                dw0 = 1;  // not aborted
                return 0;
            }
            default:
                return nvme::sc::invalid_opcode;
        }
    }

public:
    bool abortable = false;  // whether Abort rescues a dropped command

private:
    // The data pages of a command, walked as the spec says (PRP1, PRP2 or a chained list).
    bool walk_prps(const nvme::sqe& c, size_t len, std::vector<std::pair<uint8_t*, size_t>>& out) {
        uint64_t prp1 = c.sgl.address, prp2;
        std::memcpy(&prp2, reinterpret_cast<const uint8_t*>(&c) + 32, 8);
        if (prp1 & 3) return false;
        size_t first = std::min<size_t>(len, 4096 - prp1 % 4096);
        out.push_back({reinterpret_cast<uint8_t*>(prp1), first});
        len -= first;
        if (len == 0) return true;
        if (len <= 4096) {
            if (prp2 % 4096) return false;
            out.push_back({reinterpret_cast<uint8_t*>(prp2), len});
            return true;
        }
        if (prp2 & 7) return false;
        auto* e = reinterpret_cast<uint64_t*>(prp2);
        while (len > 0) {
            const bool last_slot = (reinterpret_cast<uint64_t>(e) % 4096) == 4096 - 8;
            if (last_slot && len > 4096) {  // chain pointer to the next list page
                e = reinterpret_cast<uint64_t*>(*e);
                if (reinterpret_cast<uint64_t>(e) % 4096) return false;
                continue;
            }
            if (*e % 4096) return false;
            size_t n = std::min<size_t>(len, 4096);
            out.push_back({reinterpret_cast<uint8_t*>(*e), n});
            len -= n;
            ++e;
        }
        return true;
    }

    uint16_t io(const nvme::sqe& c, uint16_t) {
        ++io_commands;
        if (drop_io) return 0xFFFF;
        if (c.nsid == 0 || c.nsid > _p.namespaces) return nvme::sc::invalid_namespace;
        uint8_t* const ns_base = media(c.nsid);
        const uint64_t slba = nvme::io_slba(c), nlb = nvme::io_nlb(c);
        switch (c.opcode) {
            case nvme::io_opc::flush:
                return 0;
            case nvme::io_opc::read:
            case nvme::io_opc::write: {
                if (slba + nlb > _p.blocks) return nvme::sc::lba_out_of_range;
                const size_t len = nlb << _p.lbads;
                if (len > (4096u << _p.mdts)) return nvme::sc::invalid_field;
                std::vector<std::pair<uint8_t*, size_t>> pages;
                if (!walk_prps(c, len, pages)) return 0x013;  // PRP offset invalid
                uint8_t* m = ns_base + (slba << _p.lbads);
                for (auto [p, n] : pages) {
                    if (c.opcode == nvme::io_opc::write)
                        std::memcpy(m, p, n);
                    else
                        std::memcpy(p, m, n);
                    m += n;
                }
                return 0;
            }
            case nvme::io_opc::write_zeroes:
                if (slba + nlb > _p.blocks) return nvme::sc::lba_out_of_range;
                std::memset(ns_base + (slba << _p.lbads), 0, nlb << _p.lbads);
                return 0;
            default:
                return nvme::sc::invalid_opcode;
        }
    }

    params _p;
    std::vector<uint8_t> _media;
    std::array<uint32_t, 0x40> _regs;
    uint32_t _doorbells[2 * 64] = {};
    std::mutex _lock;
    std::vector<sq_state> _sqs;
    std::vector<cq_state> _cqs;
    std::vector<std::pair<uint16_t, uint16_t>> _dropped;
    nvme::device_health _smart;
    std::atomic<bool> _stop{false};
    std::atomic<bool> _gone{false};
    std::thread _thread;
};

}  // namespace ferry::test
