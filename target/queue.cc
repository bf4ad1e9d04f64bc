#include "target/queue.hh"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "env/thread.hh"
#include "target/auth.hh"
#include "target/target.hh"

namespace ferry::target {

queue::queue(target& tgt, transport::connection& conn) : _tgt(tgt), _conn(conn) {}

queue::~queue() {
    // Idle by now (the connection waits for in_flight() == 0): keep what this queue counted.
    for (auto& b : _ns)
        if (b.counters) b.counters->stats->detach(b.counters);
    // Its commands are done in every store: a reset waiting for it may complete (settle_reset).
    if (_ctrl && _qid != 0) _ctrl->io_queues_alive.fetch_sub(1);
}

void queue::io_slot::complete(uint16_t status) {
    if (piece_limit) {
        done_bytes += piece_bytes;
        piece_status = status;
        if (submitting) {  // completed inside submit(): submit_pieces() goes on
            piece_completed = true;
            return;
        }
        if ((status & 0x7FF) == nvme::sc::success && done_bytes < req->data_len) {
            // A closed queue's backend queue takes no more commands (block_queue::close()).
            if (owner->_closed) return end(nvme::sc::aborted_sq_deletion);
            submit_pieces();
            return;
        }
    }
    end(status);
}

// One piece after another (a loop, not recursion, for stores that complete inside submit());
// none after a failed one, whose status is the command's.
void queue::io_slot::submit_pieces() {
    for (;;) {
        const std::span<const iovec> data = req->data();
        std::span<const iovec> piece;
        if (req->zero_data) {
            // A read of zeroes may have no buffers (check() said so): pieces carry no data.
            piece_bytes = std::min<uint32_t>(piece_limit, req->data_len - done_bytes);
        } else if (const iovec& at = data[next_iov]; next_inner != 0 || at.iov_len > piece_limit) {
            // The limit is below a chunk, or a piece ended inside this iovec: a part of it.
            piece_iov = {static_cast<uint8_t*>(at.iov_base) + next_inner,
                         std::min<size_t>(at.iov_len - next_inner, piece_limit)};
            piece = {&piece_iov, 1};
            piece_bytes = static_cast<uint32_t>(piece_iov.iov_len);
            next_inner += piece_bytes;
            if (next_inner == at.iov_len) {
                next_inner = 0;
                ++next_iov;
            }
        } else {
            // Whole iovecs (chunks) up to the limit: a sub-span of the request's own list.
            size_t end = next_iov, bytes = 0;
            while (end < data.size() && bytes + data[end].iov_len <= piece_limit) bytes += data[end++].iov_len;
            piece = data.subspan(next_iov, end - next_iov);
            piece_bytes = static_cast<uint32_t>(bytes);
            next_iov = static_cast<uint16_t>(end);
        }
        const nvme::sqe& c = req->cmd;
        const uint64_t slba = nvme::io_slba(c) + (done_bytes >> lbads);
        piece_cmd = c;  // FUA and the other CDW12 bits apply to every piece
        piece_cmd.cdw10 = static_cast<uint32_t>(slba);
        piece_cmd.cdw11 = static_cast<uint32_t>(slba >> 32);
        piece_cmd.cdw12 = (c.cdw12 & 0xFFFF0000u) | ((piece_bytes >> lbads) - 1);
        submitting = true;
        piece_completed = false;
        bq->submit(piece_cmd, piece, *this);
        submitting = false;
        if (!piece_completed) return;  // complete() carries on
        if ((piece_status & 0x7FF) != nvme::sc::success || done_bytes == req->data_len) return end(piece_status);
        if (owner->_closed) return end(nvme::sc::aborted_sq_deletion);
    }
}

void queue::io_slot::end(uint16_t status) {
    --owner->_in_flight;
    owner->_in_flight_waking -= wakes_owner;
    // Counters: this queue's own cache lines, written by this reactor only. The one clock read
    // of the completion (steady_clock: clock_gettime through the vDSO, no system call) gives
    // the latency and the end of a busy period.
    counters->completed(req->cmd.opcode, req->data_len, status, arrival_ns, env::now_ns());
    owner->finish(*req, status);
}

unsigned queue::poll() {
    unsigned n = 0;
    if (_in_flight == 0 && !_backend_busy && !_bindings_busy) return 0;
    for (auto& b : _ns)
        if (b.bq) n += b.bq->poll();
    if (_backend_busy) {
        if (_connecting) {
            advance_connect();
        } else if (_in_flight == 0) {
            // Teardown: done once every device has let go of its queue's memory and buffers.
            bool released = true;
            for (auto& b : _ns) released &= !b.bq || b.bq->released();
            _backend_busy = !released;
        }
    } else if (_bindings_busy && !_closed) {
        advance_bindings();
    }
    return n;
}

unsigned queue::in_flight() const {
    return _in_flight + (_backend_busy || _bindings_busy ? 1u : 0u);
}

bool queue::wants_polling() const {
    return _in_flight > _in_flight_waking || _backend_busy || _bindings_busy;
}

bool queue::resync_namespaces(nvme::queue_group& group, std::string& why) {
    // The generation first: a change published after this load is seen by the next resync.
    const uint64_t gen = _ns_generation->load(std::memory_order_acquire);
    const ns_snapshot snap = _subsys->namespaces();
    const ns_table& table = snap.table();
    using st = ns_binding::state;
    for (uint32_t nsid = 1; nsid < _ns.size(); ++nsid) {
        const ns_binding& b = _ns[nsid];
        if (b.st != st::setting_up && b.st != st::active) continue;
        auto it = table.find(nsid);
        if (it == table.end() || it->second != b.n) retire(nsid);
    }
    bool ok = true;
    _resync_pending = false;
    for (const auto& [nsid, n] : table) {
        if (_ns.size() <= nsid) _ns.resize(nsid + 1);
        ns_binding& b = _ns[nsid];
        if (b.n == n) {
            b.blocks = n->block_count();  // grown
            continue;
        }
        if (b.st != st::none) {
            _resync_pending = true;  // a removed namespace of that NSID still drains: bind when done
            continue;
        }
        try {
            b.bq = n->store->create_queue(_depth, &_conn.pool(), &group);
        } catch (const std::exception& e) {
            // Every namespace that failed, in NSID order.
            why += fmt::format("{}namespace {}: {}", why.empty() ? "" : "; ", nsid, e.what());
            ok = false;
            continue;
        }
        b.n = n;
        b.wakes_owner = b.bq->completes_by_wakeup();
        b.reads_zeroes = n->store->reads_zeroes();
        counter_labels labels = _counter_labels;
        labels.nsid = nsid;
        b.counters = n->stats->attach(std::move(labels));
        b.blocks = n->block_count();
        b.lbads = n->lbads;
        // Read/Write/Compare beyond the store's own limit go to it in pieces of whole blocks.
        if (const uint32_t limit = n->store->max_transfer_bytes(); limit && limit < transport::max_transfer_bytes)
            b.piece_limit = std::max(limit >> n->lbads, 1u) << n->lbads;
        b.st = st::setting_up;
        ++_bindings_busy;
    }
    _ns_seen = gen;
    _ana_seen = 0;  // new bindings: their ANA state at the next command
    return ok;
}

void queue::resync_namespaces() {
    nvme::queue_group group;
    std::string why;
    if (!resync_namespaces(group, why))
        spdlog::error("conn {} ({}): {}: I/O queue {}: new namespace not usable on this queue: {}", _conn.info().id,
                      _conn.info().peer, _ctrl->name(), _qid, why);
    advance_bindings();  // software stores are ready at once
}

void queue::refresh_ana() {
    // The count first: a change published after this load is seen at the next command.
    _ana_seen = _tgt.ana_change_count().load(std::memory_order_acquire);
    for (auto& b : _ns)
        if (b.n) b.ana_status = ana_io_status(_ctrl->ana->state(b.n->ana_group.load(std::memory_order_relaxed)));
}

void queue::retire(uint32_t nsid) {
    ns_binding& b = _ns[nsid];
    if (b.st == ns_binding::state::active) ++_bindings_busy;
    b.st = ns_binding::state::draining;
}

void queue::advance_bindings() {
    using st = ns_binding::state;
    bool unbound = false;
    for (uint32_t nsid = 1; nsid < _ns.size(); ++nsid) {
        ns_binding& b = _ns[nsid];
        switch (b.st) {
            case st::setting_up: {
                std::string why;
                auto r = b.bq->setup(why);
                if (r == nvme::block_queue::setup_state::ready) {
                    b.st = st::active;
                    --_bindings_busy;
                } else if (r == nvme::block_queue::setup_state::failed) {
                    spdlog::error("conn {} ({}): {}: I/O queue {}: namespace {} not usable on this queue: {}",
                                  _conn.info().id, _conn.info().peer, _ctrl ? _ctrl->name() : std::string("?"), _qid,
                                  nsid, why);
                    b.bq->close();
                    b.st = st::closing;
                }
                break;
            }
            case st::draining:
                if (b.counters->outstanding == 0) {  // its commands here completed
                    b.bq->close();
                    b.st = st::closing;
                }
                [[fallthrough]];
            case st::closing:
                if (b.st == st::closing && b.bq->released()) {
                    unbind(b);
                    --_bindings_busy;
                    unbound = true;
                }
                break;
            default:
                break;
        }
    }
    if (unbound && _resync_pending) resync_namespaces();
}

void queue::unbind(ns_binding& b) {
    if (b.counters) b.counters->stats->detach(b.counters);
    b.bq.reset();  // before the namespace: its store made the queue
    b = ns_binding{};
}

void queue::finish(transport::request& req, uint16_t status, uint32_t result0, uint32_t result1) {
    req.status = status;
    req.result0 = result0;
    req.result1 = result1;
    if (status != nvme::sc::success && status != (nvme::sc::success | nvme::status_dnr)) note_error(req, status);
    _conn.complete(req);
}

void queue::note_error(const transport::request& req, uint16_t status) {
    if (_ctrl) record_error(req, status);
    // Errors of I/O commands by kind, the ones refused before the store included.
    if (_qid != 0 && req.cmd.opcode != nvme::admin_opc::fabrics && req.cmd.nsid < _ns.size() &&
        _ns[req.cmd.nsid].counters)
        _ns[req.cmd.nsid].counters->count_error(status);
    spdlog::debug("conn {} qid {}: cid {} opcode {:#04x} nsid {}: {} ({:#x})", _conn.info().id, _qid, +req.cmd.cid,
                  +req.cmd.opcode, +req.cmd.nsid, nvme::status_name(status), status);
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
        // For keep-alive, and the command's arrival time for the latency counters: the reactor's
        // pass clock, no clock read per command (the start of the pass that received it).
        const uint64_t now = env::pass_now_ns();
        _arrival_ns = now;
        auto& last = _ctrl->last_traffic_ns;
        if (now > last.load(std::memory_order_relaxed) + traffic_granularity_ns)
            last.store(now, std::memory_order_relaxed);
    }
    const bool fabrics = req.cmd.opcode == nvme::admin_opc::fabrics;
    // Fused operations are not offered (Identify FUSES 0): an admin or fabrics command with FUSE
    // bits gets Invalid Field, as in nvmet; check_io refuses an I/O command's.
    if ((req.cmd.flags & 0x03) && (_qid == 0 || fabrics)) [[unlikely]] {
        finish(req, nvme::sc::invalid_field | nvme::status_dnr);
        return;
    }
    if (fabrics) {
        exec_fabrics(req);
        return;
    }
    if (!_ctrl) {
        spdlog::warn("conn {} ({}): cid {} opcode {:#04x} before Connect", _conn.info().id, _conn.info().peer,
                     +req.cmd.cid, +req.cmd.opcode);
        finish(req, nvme::sc::command_sequence_error | nvme::status_dnr);
        return;
    }
    if (_auth && !_auth->authenticated()) {
        // As Linux nvmet: only fabrics commands (Property Get/Set, Auth) before authentication.
        finish(req, auth::sc_auth_required | nvme::status_dnr);
        return;
    }
    if (_qid == 0) {
        if (_ctrl->has_notices()) take_notices();
        exec_admin(req);
    } else {
        exec_io(req);
    }
}

void queue::on_close() {
    if (_closed) return;
    _closed = true;
    _aers.clear();  // the connection releases their requests
    _auth_held = nullptr;
    if (_connecting) {
        // The Connect will not be answered; its backend queues are given back below.
        _connecting->ctrl->release_queue(_connecting->qid);
        _connecting.reset();
    }
    bool any = false;
    for (auto& b : _ns) {
        if (!b.bq) continue;
        b.bq->close();
        any = true;
    }
    _backend_busy = any;
    _bindings_busy = 0;  // the teardown waits for every backend queue
    if (!_ctrl) return;
    _ctrl->remove_queue_record(_qid);
    if (_qid == 0) {
        const bool was_dead = _ctrl->dead.exchange(true);
        _ctrl->ready.store(false);
        _ctrl->subsys.remove_controller(_ctrl->cntlid);
        spdlog::info("{}: freed ({})", _ctrl->name(),
                     was_dead ? teardown_name(_ctrl->dropped_why()) : "admin queue closed");
    } else {
        _ctrl->release_queue(_qid);
    }
}

std::string queue::association_end() const {
    const teardown why = _ctrl->dropped_why();
    return why == teardown::none ? "its admin queue closed" : teardown_name(why);
}

void queue::take_notices() {
    std::vector<uint32_t> nsids;
    bool ns_changed = false, discovery_changed = false, ana_changed = false;
    _ctrl->take_notices(nsids, ns_changed, discovery_changed, ana_changed);
    if (ana_changed) raise_event(nvme::aen::ana_changed);
    auto& list = _ctrl->changed_nsids;
    for (uint32_t id : nsids)
        if (list.size() <= 1024 && std::find(list.begin(), list.end(), id) == list.end()) list.push_back(id);
    if (ns_changed) raise_event(nvme::aen::ns_changed);
    if (discovery_changed) raise_event(nvme::aen::discovery_changed);
}

void queue::on_timer(uint64_t now_ns) {
    if (!_ctrl || _closed) return;
    if (_auth) {
        auth_timer(now_ns);
        if (_closed) return;
    }
    if (_ctrl->dead.load(std::memory_order_relaxed)) {
        _conn.close(fmt::format("{} was torn down ({})", _ctrl->name(), association_end()));
        return;
    }
    if (_qid != 0) {
        if (reset_since_connect()) {
            _conn.close(fmt::format("{} was reset or shut down by the host", _ctrl->name()));
            return;
        }
        // Idle queues resync too, so that a removed namespace is let go of without a command.
        if (_ns_generation->load(std::memory_order_acquire) != _ns_seen) resync_namespaces();
        return;
    }
    if (_ctrl->has_notices()) take_notices();
    const uint32_t kato_ms = _ctrl->kato_ms.load(std::memory_order_relaxed);
    if (kato_ms == 0) return;
    uint64_t last = _ctrl->last_traffic_ns.load(std::memory_order_relaxed);
    if (now_ns > last && now_ns - last > uint64_t(kato_ms) * 1'000'000 + traffic_granularity_ns) {
        spdlog::warn("{}: keep-alive timeout ({} ms without a command on any queue); tearing down", _ctrl->name(),
                     kato_ms);
        _ctrl->drop(teardown::keep_alive);
        _ctrl->csts |= nvme::csts::cfs;
        _conn.close("keep-alive timeout");
    }
}

}  // namespace ferry::target
