// NVM I/O commands: parse and validate, then hand to the namespace's backend queue
// (reference 4.3). This is the hot path: no allocation, no locks, no info-level logs.
#include <spdlog/spdlog.h>

#include "target/auth.hh"
#include "target/queue.hh"
#include "target/target.hh"
#include "transport/connection.hh"

namespace ferry::target {
namespace {
constexpr uint16_t dnr = nvme::status_dnr;
using nvme::dsm_range;
}  // namespace

// The checks that need no data: the transport asks them (check()) before it takes buffers or
// sends an R2T, and exec_io again once the data is there (a namespace may have gone meanwhile).
uint16_t queue::check_io(const transport::request& req) {
    const nvme::sqe& c = req.cmd;
    // Two loads of fields written only when the host enables, resets or shuts the controller
    // down: a queue a reset deleted serves nothing, even once enabled again. Acquire on `ready`
    // (a plain load on x86): seeing it set again means seeing the reset counted before it.
    const bool usable =
        _ctrl->ready.load(std::memory_order_acquire) && _ctrl->resets.load(std::memory_order_relaxed) == _resets_seen;
    if (!usable) [[unlikely]]
        return refuse_unready();
    if (c.flags & 0x03) return nvme::sc::invalid_field | dnr;  // fused operations not offered
    // Namespace changes: one load of the subsystem's generation; a resync (this reactor, rare)
    // when it moved.
    if (_ns_generation->load(std::memory_order_acquire) != _ns_seen) resync_namespaces();
    const uint32_t nsid = c.nsid;
    if (nsid == 0 || nsid >= _ns.size() || _ns[nsid].st != ns_binding::state::active) {
        if (nsid != 0 && nsid < _ns.size() && _ns[nsid].st == ns_binding::state::setting_up)
            return nvme::sc::ns_not_ready;  // its backend queue is being made: retry
        spdlog::debug("conn {} qid {}: cid {} opcode {:#04x} for unknown NSID {}", _conn.info().id, _qid, +c.cid,
                      +c.opcode, nsid);
        return nvme::sc::invalid_namespace | dnr;
    }
    const ns_binding& n = _ns[nsid];
    // ANA: one load of the target's change count; the path's state is cached per binding.
    if (_tgt.ana_change_count().load(std::memory_order_acquire) != _ana_seen) refresh_ana();
    if (n.ana_status) return n.ana_status;  // path error, no DNR: the host tries another path
    const uint64_t slba = nvme::io_slba(c);
    const uint64_t nlb = nvme::io_nlb(c);

    switch (c.opcode) {
        case nvme::io_opc::read:
        case nvme::io_opc::write:
        case nvme::io_opc::compare:
            if (slba >= n.blocks || nlb > n.blocks - slba) return nvme::sc::lba_out_of_range | dnr;
            if (nlb << n.lbads != req.data_len) return nvme::sc::sgl_invalid_data_length | dnr;
            if (req.data_len > transport::max_transfer_bytes) return nvme::sc::invalid_field | dnr;  // MDTS
            return 0;
        case nvme::io_opc::write_zeroes:
            if (slba >= n.blocks || nlb > n.blocks - slba) return nvme::sc::lba_out_of_range | dnr;
            if (req.data_len != 0) return nvme::sc::sgl_invalid_data_length | dnr;
            return 0;
        case nvme::io_opc::flush:
            if (req.data_len != 0) return nvme::sc::sgl_invalid_data_length | dnr;
            return 0;
        case nvme::io_opc::dataset_mgmt: {
            const unsigned nr = (c.cdw10 & 0xFF) + 1;
            if (req.data_len < nr * sizeof(dsm_range)) return nvme::sc::sgl_invalid_data_length | dnr;
            return 0;
        }
        default:
            return nvme::sc::invalid_opcode | dnr;
    }
}

// The association ended (its admin queue closed, its keep-alive expired, or it was torn down
// through the management API), or the host reset or shut the controller down, and this I/O
// queue, on whatever reactor, has not reached its timer tick yet: it closes now and answers
// nothing, so the host fails the command over to the association it reconnects. An answer
// with DNR would make Linux end the I/O with an error to the application (EIO), and a write's
// data would be lost to it.
uint16_t queue::refuse_unready() {
    // check_io saw `ready` false or `resets` moved; the admin queue's on_close marks the
    // controller dead before it clears `ready`, so with this fence the flag is seen.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (_ctrl->dead.load()) {
        _conn.close(fmt::format("{} was torn down ({})", _ctrl->name(), association_end()));
    } else {
        // A connected I/O queue finds its live controller not ready only when the host reset
        // or shut it down (begin_reset clears `ready` a moment before it counts the reset):
        // this queue was deleted with the others.
        _conn.close(fmt::format("{} was reset or shut down by the host", _ctrl->name()));
    }
    return nvme::sc::aborted_sq_deletion;  // never sent: the connection is closing
}

uint16_t queue::check(transport::request& req) {
    // Only I/O commands of a live, authenticated controller; on_command answers the rest.
    if (_qid == 0 || !_ctrl || (_auth && !_auth->authenticated()) || req.cmd.opcode == nvme::admin_opc::fabrics)
        return 0;
    const uint16_t status = check_io(req);
    if (status) {
        if (!_closed) note_error(req, status);  // a command not answered is no error the host sees
        return status;
    }
    req.zero_data = _ns[req.cmd.nsid].zero_read(req.cmd);  // the transport takes no buffers for it
    return 0;
}

void queue::exec_io(transport::request& req) {
    const nvme::sqe& c = req.cmd;
    if (const uint16_t status = check_io(req)) {
        if (_closed) return _conn.complete(req);  // refuse_unready closed the connection: nothing is sent
        return finish(req, status);
    }
    // PRINFO (CDW12 29:26) is ignored: no namespace here is formatted with protection
    // information, for which the NVM Command Set ignores the field (nvmet, SPDK and QEMU too).
    // Cleared so that no store, an SSD least of all, acts on it.
    if (c.opcode == nvme::io_opc::read || c.opcode == nvme::io_opc::write || c.opcode == nvme::io_opc::compare ||
        c.opcode == nvme::io_opc::write_zeroes)
        req.cmd.cdw12 &= ~(0xFu << 26);
    ns_binding& n = _ns[c.nsid];
    const bool zeroes = n.zero_read(c);
    // check() promised zeroes and the transport took no buffers: on_command follows check() in
    // the same call, so the namespace cannot have changed; were it otherwise, fail the command
    // rather than send what the buffers do not hold.
    if (req.zero_data && !zeroes) return finish(req, nvme::sc::internal_error);
    req.zero_data = zeroes;
    switch (c.opcode) {
        case nvme::io_opc::dataset_mgmt: {
            const unsigned nr = (c.cdw10 & 0xFF) + 1;
            for (unsigned i = 0; i < nr; ++i) {
                dsm_range r;
                req.copy_out(&r, sizeof(r), i * sizeof(r));
                if (r.slba > n.blocks || r.length > n.blocks - r.slba)
                    return finish(req, nvme::sc::lba_out_of_range | dnr);
            }
            break;
        }
        default:
            break;
    }
    io_slot& slot = _slots[req.tag];
    slot.owner = this;
    slot.req = &req;
    slot.counters = n.counters.get();
    slot.arrival_ns = _arrival_ns;  // no clock read here: on_command's
    slot.counters->submitted(_arrival_ns);
    ++_in_flight;
    slot.wakes_owner = n.wakes_owner;
    _in_flight_waking += n.wakes_owner;
    slot.piece_limit = 0;
    if (n.piece_limit && req.data_len > n.piece_limit &&
        (c.opcode == nvme::io_opc::read || c.opcode == nvme::io_opc::write || c.opcode == nvme::io_opc::compare)) {
        slot.piece_limit = n.piece_limit;
        slot.bq = n.bq.get();
        slot.lbads = n.lbads;
        slot.done_bytes = slot.next_inner = 0;
        slot.next_iov = 0;
        return slot.submit_pieces();
    }
    n.bq->submit(c, req.data(), slot);
}

}  // namespace ferry::target
