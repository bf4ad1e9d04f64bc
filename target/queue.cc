#include "target/queue.hh"

#include <cstring>

#include <spdlog/spdlog.h>

#include "env/thread.hh"
#include "target/target.hh"

namespace ferry::target {

queue::queue(target& tgt, transport::connection& conn) : _tgt(tgt), _conn(conn) {}

queue::~queue() = default;

void queue::io_slot::complete(uint16_t status) {
    --owner->_in_flight;
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
    if (status != nvme::sc::success && status != (nvme::sc::success | nvme::status_dnr))
        spdlog::debug("conn {} qid {}: cid {} opcode {:#04x} nsid {}: {} ({:#x})", _conn.info().id, _qid, +req.cmd.cid,
                      +req.cmd.opcode, +req.cmd.nsid, nvme::status_name(status), status);
    _conn.complete(req);
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

void queue::on_command(transport::request& req) {
    if (_ctrl) _ctrl->last_traffic_ns.store(env::now_ns(), std::memory_order_relaxed);
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
    if (now_ns > last && now_ns - last > uint64_t(_ctrl->kato_ms) * 1'000'000) {
        spdlog::warn("{}: keep-alive timeout ({} ms without a command on any queue); tearing down", _ctrl->name(),
                     _ctrl->kato_ms);
        _ctrl->dead.store(true);
        _ctrl->csts |= nvme::csts::cfs;
        _conn.close("keep-alive timeout");
    }
}

}  // namespace ferry::target
