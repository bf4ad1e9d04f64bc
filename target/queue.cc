#include "target/queue.hh"

#include <cstring>

#include <spdlog/spdlog.h>

#include "env/thread.hh"
#include "target/target.hh"

namespace ferry::target {

queue::queue(target& tgt, transport::connection& conn) : _tgt(tgt), _conn(conn) {}

queue::~queue() {
    // Idle by now (the connection waits for in_flight() == 0): keep what this queue counted.
    for (const auto& c : _ns_counters)
        if (c) c->stats->detach(c);
}

void queue::io_slot::complete(uint16_t status) {
    --owner->_in_flight;
    // Counters: this queue's own cache lines, written by this reactor only. The one clock read
    // of the completion (steady_clock: clock_gettime through the vDSO, no system call) gives
    // the latency and the end of a busy period.
    counters->completed(req->cmd.opcode, req->data_len, status, arrival_ns, env::now_ns());
    owner->finish(*req, status);
}

unsigned queue::poll() {
    unsigned n = 0;
    if (_in_flight == 0 && !_backend_busy) return 0;
    for (auto& q : _ns_queues)
        if (q) n += q->poll();
    if (_backend_busy) {
        if (_connecting) {
            advance_connect();
        } else if (_in_flight == 0) {
            // Teardown: done once every device has let go of its queue's memory and buffers.
            bool released = true;
            for (auto& q : _ns_queues) released &= !q || q->released();
            _backend_busy = !released;
        }
    }
    return n;
}

unsigned queue::in_flight() const {
    return _in_flight + (_backend_busy ? 1u : 0u);
}

void queue::finish(transport::request& req, uint16_t status, uint32_t result0, uint32_t result1) {
    req.status = status;
    req.result0 = result0;
    req.result1 = result1;
    if (status != nvme::sc::success && status != (nvme::sc::success | nvme::status_dnr)) {
        if (_ctrl) record_error(req, status);
        // Errors of I/O commands by kind, the ones refused before the store included.
        if (_qid != 0 && req.cmd.opcode != nvme::admin_opc::fabrics && req.cmd.nsid < _ns_counters.size() &&
            _ns_counters[req.cmd.nsid])
            _ns_counters[req.cmd.nsid]->count_error(status);
        spdlog::debug("conn {} qid {}: cid {} opcode {:#04x} nsid {}: {} ({:#x})", _conn.info().id, _qid, +req.cmd.cid,
                      +req.cmd.opcode, +req.cmd.nsid, nvme::status_name(status), status);
    }
    _conn.complete(req);
}

void queue::record_error(const transport::request& req, uint16_t status) {
    const uint8_t opc = req.cmd.opcode;
    const bool has_lba = _qid != 0 && (opc == nvme::io_opc::read || opc == nvme::io_opc::write ||
                                       opc == nvme::io_opc::compare || opc == nvme::io_opc::write_zeroes);
    _ctrl->errors.record(_qid, req.cmd.cid, status, 0xFFFF, has_lba ? nvme::io_slba(req.cmd) : 0, req.cmd.nsid);
}

void queue::reply_data(transport::request& req, const void* src, size_t len, size_t offset) {
    // Copy what fits from `src` at `offset`, zero the rest of the host's buffer.
    size_t avail = offset < len ? len - offset : 0;
    size_t n = std::min<size_t>(avail, req.data_len);
    req.copy_in(static_cast<const uint8_t*>(src) + (n ? offset : 0), n, 0);
    if (n < req.data_len) {
        static const uint8_t zeros[4096] = {};
        for (size_t at = n; at < req.data_len; at += sizeof(zeros))
            req.copy_in(zeros, std::min<size_t>(sizeof(zeros), req.data_len - at), at);
    }
}

namespace {
// Keep-alive traffic is recorded at this granularity: a queue stores the controller's shared
// timestamp only when it is older than this, so I/O queues on several reactors do not write
// that cache line on every command. The timeout allows for it.
constexpr uint64_t traffic_granularity_ns = 100'000'000;
}  // namespace

void queue::on_command(transport::request& req) {
    if (_ctrl) {
        // Read for keep-alive anyway; also the command's arrival time for the latency counters.
        const uint64_t now = env::now_ns();
        _arrival_ns = now;
        auto& last = _ctrl->last_traffic_ns;
        if (now > last.load(std::memory_order_relaxed) + traffic_granularity_ns)
            last.store(now, std::memory_order_relaxed);
    }
    if (req.cmd.opcode == nvme::admin_opc::fabrics) {
        exec_fabrics(req);
        return;
    }
    if (!_ctrl) {
        spdlog::warn("conn {} ({}): cid {} opcode {:#04x} before Connect", _conn.info().id, _conn.info().peer,
                     +req.cmd.cid, +req.cmd.opcode);
        finish(req, nvme::sc::command_sequence_error | nvme::status_dnr);
        return;
    }
    if (_qid == 0)
        exec_admin(req);
    else
        exec_io(req);
}

void queue::on_close() {
    if (_closed) return;
    _closed = true;
    _aers.clear();  // the connection releases their requests
    if (_connecting) {
        // The Connect will not be answered; its backend queues are given back below.
        _connecting->ctrl->release_queue(_connecting->qid);
        _connecting.reset();
    }
    for (auto& q : _ns_queues)
        if (q) q->close();
    _backend_busy = !_ns_queues.empty();
    if (!_ctrl) return;
    if (_qid == 0) {
        const bool was_dead = _ctrl->dead.exchange(true);
        _ctrl->ready.store(false);
        _ctrl->subsys.remove_controller(_ctrl->cntlid);
        spdlog::info("{}: freed ({})", _ctrl->name(),
                     was_dead ? "after keep-alive timeout" : "admin queue closed");
    } else {
        _ctrl->release_queue(_qid);
    }
}

void queue::on_timer(uint64_t now_ns) {
    if (!_ctrl || _closed) return;
    if (_ctrl->dead.load(std::memory_order_relaxed)) {
        _conn.close(fmt::format("{} was torn down", _ctrl->name()));
        return;
    }
    if (_qid != 0 || _ctrl->kato_ms == 0) return;
    uint64_t last = _ctrl->last_traffic_ns.load(std::memory_order_relaxed);
    if (now_ns > last && now_ns - last > uint64_t(_ctrl->kato_ms) * 1'000'000 + traffic_granularity_ns) {
        spdlog::warn("{}: keep-alive timeout ({} ms without a command on any queue); tearing down", _ctrl->name(),
                     _ctrl->kato_ms);
        _ctrl->dead.store(true);
        _ctrl->csts |= nvme::csts::cfs;
        _conn.close("keep-alive timeout");
    }
}

}  // namespace ferry::target
