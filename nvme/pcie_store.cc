// A namespace on a local PCIe NVMe SSD. Each queue owns one hardware SQ/CQ pair: the host's
// command is forwarded with the device's NSID and PRPs that point at the very pool buffers
// the network path received into (writes) or will send from (reads). No payload copy.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "env/thread.hh"
#include "nvme/block_queue.hh"
#include "nvme/pcie.hh"
#include "nvme/prp.hh"

namespace ferry::nvme {

namespace {

// One hardware queue pair and its command slots, used by one reactor. Shared by the
// pcie_queues of every namespace of its SSD that one host queue reaches.
//
// The reactor never waits for the admin thread: creation, re-creation after a reset and
// deletion are admin_ops it polls. Lifecycle: creating -> live; a reset or removal makes the
// queue stale (in-flight commands fail with a path error), re-created (reviving) when the
// controller is live again; close() -> deleting once nothing is in flight -> released.
class hw_channel {
public:
    hw_channel(std::shared_ptr<pcie_controller> ctrl, std::shared_ptr<hw_queue> hw, std::shared_ptr<admin_op> created,
               const env::dma_pool& buffers)
        : _ctrl(std::move(ctrl)), _hw(std::move(hw)), _op(std::move(created)), _buffers(buffers) {
        // One SQ slot stays empty, so entries - 1 commands can be outstanding.
        _slots.resize(_hw->entries() - 1u);
        _free.reserve(_slots.size());
        for (size_t i = _slots.size(); i-- > 0;) _free.push_back(static_cast<uint16_t>(i));
        _timeout_ns = uint64_t{_ctrl->options().io_timeout_ms} * 1000000;
    }

    ~hw_channel() {
        if (_in_flight > 0 && _phase == phase::live && _live_generation == _ctrl->generation()) {
            // The owner gives up on commands the device still has (ferryd stopping after its
            // wait): their buffers are freed next, so the device must stop first. Blocks, but
            // only on this last-resort path.
            spdlog::error("{}: freed with {} commands in flight: resetting the controller first", describe(),
                          _in_flight);
            _ctrl->reset_now(fmt::format("{} freed with commands in flight", describe()));
        }
        if (_in_flight > 0) fail_all(lost_status());
        // Not released (closed too early or never): the job keeps the queue's memory until
        // the device has deleted the queue.
        if (_phase != phase::released && _phase != phase::deleting) _hw->begin_delete();
    }

    // Setup of the first creation, for block_queue::setup().
    block_queue::setup_state setup(std::string& why) {
        advance();
        if (_phase == phase::creating) return block_queue::setup_state::pending;
        if (_phase == phase::failed) {
            why = _error;
            return block_queue::setup_state::failed;
        }
        return block_queue::setup_state::ready;
    }

    // Forwards `cmd` as a command for the device's namespace `nsid`.
    void submit(const sqe& cmd, std::span<const iovec> data, io_completion& done, uint32_t nsid) {
        if (_phase != phase::live || _live_generation != _ctrl->generation()) {
            advance();
            if (_phase == phase::live && _live_generation != _ctrl->generation()) go_stale();
            if (_phase == phase::stale) revive();
            // Re-creation pending (or impossible now): fail fast, the host retries.
            if (_phase != phase::live) return done.complete(lost_status());
        }
        if (_free.empty() || _hw->ring().full()) return done.complete(sc::internal_error);  // caller exceeded depth
        const uint16_t cid = _free.back();

        dma_segment segs[256];  // 1 MiB (the controller cap; the target splits larger commands) in 8 KiB chunks is 128
        size_t n = 0;
        for (const auto& v : data) {
            if (v.iov_len == 0) continue;
            if (n == std::size(segs) || !_buffers.owns(v.iov_base)) return bad_buffer(cmd, done);
            segs[n++] = {_buffers.iova(v.iov_base), static_cast<uint32_t>(v.iov_len)};
        }
        uint64_t prp1, prp2;
        prp_list_page list{_hw->prp_list(cid), _hw->prp_list_iova(cid)};
        if (!build_prps({segs, n}, _ctrl->page_size(), {&list, 1}, prp1, prp2)) return bad_buffer(cmd, done);

        sqe d = cmd;
        d.flags = 0;  // PRPs, no fused operation
        d.cid = cid;
        d.nsid = nsid;
        d.mptr = 0;
        d.sgl.address = prp1;
        std::memcpy(reinterpret_cast<uint8_t*>(&d) + 32, &prp2, sizeof(prp2));
        _hw->ring().push(d);
        _free.pop_back();
        _slots[cid] = {&done, env::pass_now_ns(), false};  // the reactor's pass clock
        ++_in_flight;
    }

    unsigned poll() {
        if (_phase != phase::live) {
            advance();
            return 0;
        }
        if (_live_generation != _ctrl->generation()) {
            // Reset or removal: what was in flight will never complete.
            const unsigned failed = _in_flight;
            go_stale();
            if (_closed) advance();
            return failed;
        }
        _hw->ring().ring();
        unsigned n = _hw->ring().reap([&](const cqe& c) {
            if (c.cid >= _slots.size() || !_slots[c.cid].done) {
                spdlog::error("{}: completion for unknown cid {}", describe(), +c.cid);
                return;
            }
            auto* done = _slots[c.cid].done;
            _slots[c.cid].done = nullptr;
            _free.push_back(c.cid);
            --_in_flight;
            done->complete(status_from_cqe(c.status));
        });
        if (_in_flight > 0 && (++_polls & 1023) == 0) check_timeouts();
        if (_closed && _in_flight == 0) advance();
        return n;
    }

    unsigned in_flight() const { return _in_flight; }

    // The pcie_queues sharing the channel (one per namespace of the SSD on this host queue).
    // A namespace removed live lets go of the channel; the hardware queue goes with the last.
    void add_user() { ++_users; }
    void forget_user() { --_users; }
    // Returns true for the last user: the channel is closed then.
    bool remove_user() {
        if (--_users > 0) return false;
        close();
        return true;
    }

    // No more commands: delete the hardware queue once what is in flight is done.
    void close() {
        _closed = true;
        advance();
    }
    // The device no longer references the queue's memory or its commands' buffers.
    bool released() const { return _phase == phase::released; }

    std::string describe() const {
        return fmt::format("hardware queue {} of {} (depth {})", _hw->qid(), _ctrl->name(), _hw->entries() - 1u);
    }

private:
    enum class phase : uint8_t { creating, live, stale, reviving, failed, deleting, released };

    struct slot {
        io_completion* done = nullptr;
        uint64_t submitted_ns = 0;
        bool abort_sent = false;
    };

    // Moves the lifecycle on from what the admin thread has answered. Never waits.
    void advance() {
        switch (_phase) {
            case phase::creating:
            case phase::reviving:
                if (!_op->done()) return;
                if (_op->ok()) {
                    _live_generation = _hw->generation();  // written before the op was published
                    if (_phase == phase::reviving) spdlog::info("{}: re-created after a controller reset", describe());
                    _phase = phase::live;
                } else if (_phase == phase::reviving) {
                    spdlog::warn("{}: re-creation failed: {}", describe(), _op->error());
                    _phase = phase::stale;
                    _retry_ns = env::now_ns() + retry_interval_ns;
                } else {
                    _error = _op->error();
                    _phase = phase::failed;
                }
                _op.reset();
                if (!_closed) return;
                break;
            case phase::deleting:
                if (_op->done()) {
                    _op.reset();
                    _phase = phase::released;
                }
                return;
            case phase::released:
                return;
            case phase::live:
            case phase::stale:
            case phase::failed:
                break;
        }
        if (!_closed) return;
        if (_phase == phase::live && _live_generation != _ctrl->generation()) go_stale();
        if (_phase == phase::live && _in_flight > 0) return;  // timeouts still apply (poll)
        _phase = phase::deleting;
        _op = _hw->begin_delete();
    }

    // The device forgot the queue (reset, removal, shutdown).
    void go_stale() {
        fail_all(lost_status());
        _phase = phase::stale;
        _retry_ns = 0;
    }

    // Asks for the queue again once the controller is live (rate-limited after a failure).
    void revive() {
        if (_ctrl->state() != controller_state::live || env::now_ns() < _retry_ns) return;
        _op = _hw->begin_create();
        _phase = phase::reviving;
    }

    void bad_buffer(const sqe& cmd, io_completion& done) {
        // The target only hands over pool chunks, so this is a bug, not a host error.
        spdlog::error("{}: command cid {} opcode {:#04x}: data buffer not expressible as PRPs", describe(), +cmd.cid,
                      +cmd.opcode);
        done.complete(sc::internal_error | status_dnr);
    }

    void fail_all(uint16_t status) {
        for (size_t i = 0; i < _slots.size(); ++i) {
            if (!_slots[i].done) continue;
            auto* done = _slots[i].done;
            _slots[i].done = nullptr;
            _free.push_back(static_cast<uint16_t>(i));
            --_in_flight;
            done->complete(status);
        }
    }

    // A path error: the command did not complete on the SSD. After a reset the host may retry
    // it; a device that is gone will not come back, so DNR tells the host to stop retrying
    // (a multipath host would otherwise resubmit it at once, forever).
    uint16_t lost_status() const {
        const auto st = _ctrl->state();
        return st == controller_state::gone || st == controller_state::failed ? sc::controller_path_error | status_dnr
                                                                              : sc::controller_path_error;
    }

    void check_timeouts() {
        const uint64_t now = env::now_ns();
        for (size_t i = 0; i < _slots.size(); ++i) {
            auto& s = _slots[i];
            if (!s.done || now - s.submitted_ns < _timeout_ns) continue;
            if (!s.abort_sent) {
                spdlog::warn("{}: command cid {} outstanding for {} ms: aborting it", describe(), i,
                             (now - s.submitted_ns) / 1000000);
                _ctrl->request_abort(_hw->qid(), static_cast<uint16_t>(i));
                s.abort_sent = true;
            } else if (now - s.submitted_ns >= 2 * _timeout_ns && _reset_generation != _ctrl->generation() + 1) {
                _reset_generation = _ctrl->generation() + 1;
                _ctrl->request_reset(
                    fmt::format("command cid {} on I/O queue {} not completed after abort", i, _hw->qid()));
            }
        }
    }

    static constexpr uint64_t retry_interval_ns = 100'000'000;

    std::shared_ptr<pcie_controller> _ctrl;
    std::shared_ptr<hw_queue> _hw;
    std::shared_ptr<admin_op> _op;  // the creation or deletion under way
    const env::dma_pool& _buffers;
    phase _phase = phase::creating;
    bool _closed = false;
    uint32_t _live_generation = 0;
    uint64_t _retry_ns = 0;
    std::string _error;  // why the first creation failed
    std::vector<slot> _slots;
    std::vector<uint16_t> _free;
    unsigned _in_flight = 0;
    unsigned _polls = 0;
    uint64_t _timeout_ns = 0;
    uint32_t _reset_generation = 0;
    unsigned _users = 0;
};

// A namespace's view of a channel: commands go out with the device's NSID.
class pcie_queue final : public block_queue {
public:
    pcie_queue(std::shared_ptr<hw_channel> channel, uint32_t nsid) : _channel(std::move(channel)), _nsid(nsid) {
        _channel->add_user();
    }
    ~pcie_queue() override {
        if (!_closed) _channel->forget_user();  // dropped unclosed (a failed Connect): no close
    }
    void submit(const sqe& cmd, std::span<const iovec> data, io_completion& done) override {
        _channel->submit(cmd, data, done, _nsid);
    }
    unsigned poll() override { return _channel->poll(); }
    unsigned in_flight() const override { return _channel->in_flight(); }
    setup_state setup(std::string& why) override { return _channel->setup(why); }
    // Closing one namespace's view closes the channel only when no sibling uses it. A view
    // that was not the last is released at once: its owner closes it after its own commands
    // completed, or together with its siblings, whose last keeps the channel until the device
    // let go of it.
    void close() override {
        if (_closed) return;
        _closed = true;
        _last = _channel->remove_user();
    }
    bool released() const override { return _closed && (!_last || _channel->released()); }
    std::string describe() const override { return _channel->describe(); }

private:
    std::shared_ptr<hw_channel> _channel;
    const uint32_t _nsid;
    bool _closed = false;
    bool _last = false;  // closed the channel
};

class pcie_store final : public block_store {
public:
    pcie_store(std::shared_ptr<pcie_controller> ctrl, uint32_t nsid) : _ctrl(std::move(ctrl)), _nsid(nsid) {
        _info = _ctrl->namespace_info(nsid);
        if (_info.blocks == 0)
            throw std::runtime_error(fmt::format("controller {} has no active namespace {}", _ctrl->name(), nsid));
    }
    uint64_t block_count() const override { return _info.blocks; }
    uint32_t block_size() const override { return _info.block_size; }
    uint32_t max_transfer_bytes() const override { return _ctrl->max_transfer_bytes(); }
    // Forwarded commands: only what the SSD does (the host then never sends the rest).
    uint16_t optional_commands() const override { return _ctrl->identify().oncs & (0x01 | 0x04 | 0x08); }
    uint8_t deallocate_features() const override { return _info.dlfeat; }
    std::optional<device_health> health() const override { return _ctrl->health(); }
    std::string describe() const override { return fmt::format("PCIe NVMe {} namespace {}", _ctrl->name(), _nsid); }
    std::unique_ptr<block_queue> create_queue(unsigned depth, const env::dma_pool* buffers,
                                              queue_group* group) override {
        if (!buffers) throw std::runtime_error("a PCIe namespace needs the caller's buffer pool");
        // Another namespace of this SSD already has the host queue's hardware queue: share it.
        if (group)
            if (auto shared = std::static_pointer_cast<hw_channel>(group->find(_ctrl.get())))
                return std::make_unique<pcie_queue>(shared, _nsid);
        if (depth + 1u > _ctrl->max_queue_entries())
            throw std::runtime_error(fmt::format("queue depth {} exceeds what controller {} supports ({})", depth,
                                                 _ctrl->name(), _ctrl->max_queue_entries() - 1u));
        std::shared_ptr<admin_op> created;
        auto hw = _ctrl->create_queue(static_cast<uint16_t>(depth + 1u), created);
        auto channel = std::make_shared<hw_channel>(_ctrl, std::move(hw), std::move(created), *buffers);
        if (group) group->add(_ctrl.get(), channel);
        return std::make_unique<pcie_queue>(channel, _nsid);
    }

private:
    std::shared_ptr<pcie_controller> _ctrl;
    uint32_t _nsid;
    pcie_namespace_info _info;
};

}  // namespace

std::unique_ptr<block_store> make_pcie_store(const std::string& bdf, uint32_t nsid) {
    return std::make_unique<pcie_store>(open_pcie_controller(bdf), nsid);
}

// For tests: a store over a controller that is already started (e.g. on a software model).
std::unique_ptr<block_store> make_pcie_store(std::shared_ptr<pcie_controller> ctrl, uint32_t nsid) {
    return std::make_unique<pcie_store>(std::move(ctrl), nsid);
}

}  // namespace ferry::nvme
