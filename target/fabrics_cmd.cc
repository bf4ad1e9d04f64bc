// Fabrics commands: Connect, Property Get/Set, Disconnect (reference 2.1-2.5).
#include <spdlog/spdlog.h>

#include <cstring>

#include "env/thread.hh"
#include "target/queue.hh"
#include "target/target.hh"

namespace ferry::target {
namespace {
constexpr uint64_t cap_value() {
    uint64_t cap = 0;
    cap |= uint64_t(max_queue_entries - 1);  // MQES
    cap |= uint64_t(1) << 16;                // CQR: fabrics requires contiguous queues
    cap |= uint64_t(15) << 24;               // TO: 7.5 s
    cap |= uint64_t(1) << 37;                // CSS: NVM command set
    return cap;                              // MPSMIN = MPSMAX = 0 (4 KiB)
}
constexpr uint32_t version = 0x00010400;  // NVMe 1.4

bool valid_nqn(std::string_view s) {
    return s.size() >= 11 && s.size() <= nvme::nqn_max_len && s.substr(0, 4) == "nqn.";
}
}  // namespace

void queue::exec_fabrics(transport::request& req) {
    const auto& f = reinterpret_cast<const nvme::fabrics_sqe&>(req.cmd);
    if (f.fctype == nvme::fctype::connect) {
        exec_connect(req);
        return;
    }
    if (!_ctrl) {
        finish(req, nvme::sc::command_sequence_error | nvme::status_dnr);
        return;
    }
    switch (f.fctype) {
        case nvme::fctype::property_get:
        case nvme::fctype::property_set:
            if (_qid != 0) {
                finish(req, nvme::sc::invalid_queue_type | nvme::status_dnr);
            } else if (f.fctype == nvme::fctype::property_get) {
                exec_property_get(req);
            } else {
                exec_property_set(req);
            }
            return;
        case nvme::fctype::disconnect:
            if (_qid == 0) {
                finish(req, nvme::sc::invalid_queue_type | nvme::status_dnr);
                return;
            }
            if (req.cmd.cdw10 & 0xFFFF) {  // RECFMT: only format 0 exists
                finish(req, nvme::sc::connect_incompatible_format | nvme::status_dnr);
                return;
            }
            finish(req, nvme::sc::success);
            _conn.close("host sent Disconnect");
            return;
        case nvme::fctype::auth_send:
            exec_auth_send(req);
            return;
        case nvme::fctype::auth_recv:
            exec_auth_recv(req);
            return;
        default:
            finish(req, nvme::sc::invalid_opcode | nvme::status_dnr);
    }
}

void queue::exec_connect(transport::request& req) {
    const auto& c = reinterpret_cast<const nvme::connect_sqe&>(req.cmd);
    const auto& info = _conn.info();
    auto reject = [&](uint16_t status, uint32_t ipo, const std::string& why) {
        spdlog::warn("conn {} ({}): Connect qid {} rejected: {}", info.id, info.peer, +c.qid, why);
        finish(req, status | nvme::status_dnr, ipo);
    };
    if (_ctrl || _connecting) return reject(nvme::sc::command_sequence_error, 0, "queue already connected");
    if (c.recfmt != 0) return reject(nvme::sc::connect_incompatible_format, 0, fmt::format("RECFMT {}", +c.recfmt));
    if (req.data_len != sizeof(nvme::connect_data))
        return reject(nvme::sc::sgl_invalid_data_length, 0, fmt::format("{} bytes of Connect data", req.data_len));
    nvme::connect_data d;
    req.copy_out(&d, sizeof(d));
    const std::string subnqn(nvme::fixed_string(d.subnqn, sizeof(d.subnqn)));
    const std::string hostnqn(nvme::fixed_string(d.hostnqn, sizeof(d.hostnqn)));
    const uint16_t depth = static_cast<uint16_t>(c.sqsize + 1u);

    if (c.sqsize == 0)
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_sqe(offsetof(nvme::connect_sqe, sqsize)),
                      "SQSIZE 0");
    // 65536 entries: beyond any queue limit, and `depth` wraps to 0, which the limit checks
    // below would let through.
    if (c.sqsize == 0xFFFF)
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_sqe(offsetof(nvme::connect_sqe, sqsize)),
                      fmt::format("SQSIZE {} exceeds {}", +c.sqsize,
                                  (c.qid == 0 ? max_admin_queue_entries : max_queue_entries) - 1));
    if (!valid_nqn(subnqn))
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_data(offsetof(nvme::connect_data, subnqn)),
                      "malformed subsystem NQN");
    // An empty host NQN (SPDK's initiator sends one by default) is accepted where the subsystem
    // allows any host, as SPDK's and Linux's targets do; an allow list refuses it below.
    if (!hostnqn.empty() && !valid_nqn(hostnqn))
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_data(offsetof(nvme::connect_data, hostnqn)),
                      "malformed host NQN");
    std::array<uint8_t, 16> hostid;
    std::memcpy(hostid.data(), d.hostid, 16);
    if (hostid == std::array<uint8_t, 16>{})
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_data(offsetof(nvme::connect_data, hostid)),
                      "host identifier is zero");
    // Over TLS the PSK proved only the (host, subsystem) of its identity: the Connect must name those.
    if (info.tls && hostnqn != info.tls_hostnqn)
        return reject(
            nvme::sc::connect_invalid_param, nvme::connect_ipo_data(offsetof(nvme::connect_data, hostnqn)),
            fmt::format("host NQN {} is not the TLS PSK identity's {}", host_label(hostnqn), info.tls_hostnqn));
    if (info.tls && subnqn != info.tls_subnqn)
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_data(offsetof(nvme::connect_data, subnqn)),
                      fmt::format("subsystem NQN {} is not the TLS PSK identity's {}", subnqn, info.tls_subnqn));
    std::shared_ptr<subsystem> sub = _tgt.find_subsystem(subnqn);
    if (!sub) {
        // Without DNR: a subsystem removed through the management API may be re-created, and
        // Linux stops reconnecting a controller once a Connect fails with DNR.
        spdlog::warn("conn {} ({}): Connect qid {} rejected: no subsystem {}", info.id, info.peer, +c.qid, subnqn);
        finish(req, nvme::sc::connect_invalid_param, nvme::connect_ipo_data(offsetof(nvme::connect_data, subnqn)));
        return;
    }
    if (!sub->host_allowed(hostnqn)) {
        spdlog::warn("conn {} ({}): host {} not allowed to access {}", info.id, info.peer, host_label(hostnqn), subnqn);
        finish(req, nvme::sc::connect_invalid_host | nvme::status_dnr);
        return;
    }
    if (!info.tls && !hostnqn.empty() && !sub->keys_of(hostnqn).tls_psk.empty()) {
        spdlog::warn("conn {} ({}): Connect qid {} rejected: host {} has a TLS PSK for {} but connected without TLS",
                     info.id, info.peer, +c.qid, host_label(hostnqn), subnqn);
        finish(req, nvme::sc::connect_invalid_host | nvme::status_dnr);
        return;
    }
    if (hostnqn.empty())
        spdlog::info("conn {} ({}): Connect qid {} with an empty host NQN accepted: {} allows any host", info.id,
                     info.peer, +c.qid, subnqn);
    const bool sq_flow_disabled = c.cattr & nvme::cattr_disable_sqflow;

    if (c.qid == 0) {
        if (d.cntlid != 0xFFFF)
            return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_data(offsetof(nvme::connect_data, cntlid)),
                          fmt::format("CNTLID {:#x} (only the dynamic model, 0xFFFF, is supported)", +d.cntlid));
        if (depth > max_admin_queue_entries)
            return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_sqe(offsetof(nvme::connect_sqe, sqsize)),
                          fmt::format("admin SQSIZE {} exceeds {}", +c.sqsize, max_admin_queue_entries - 1));
        uint32_t kato = round_kato_ms(c.kato);
        if (sub->is_discovery() && kato == 0) kato = discovery_default_kato_ms;
        auto ctrl = sub->create_controller(hostnqn, hostid, kato, _tgt.ana_port_for(info));
        if (!ctrl) {
            // No CNTLID left, or the subsystem was removed / the host disallowed meanwhile.
            spdlog::warn("conn {} ({}): Connect to {} rejected: no controller could be created", info.id, info.peer,
                         subnqn);
            finish(req, nvme::sc::connect_ctrl_busy);  // may be retried (a removal raced)
            return;
        }
        // The admission count holds it as pending until it authenticated (auth_cmd.cc).
        if (auth_wanted(*sub, hostnqn)) _conn.set_auth_pending(true);
        if (!_conn.configure_queue(0, depth, sq_flow_disabled, sq_flow_disabled)) {
            sub->remove_controller(ctrl->cntlid);
            spdlog::warn("conn {} ({}): Connect rejected: buffer pool exhausted", info.id, info.peer);
            finish(req, nvme::sc::connect_ctrl_busy);
            return;
        }
        ctrl->last_traffic_ns.store(env::now_ns());
        _subsys = sub;
        _ns_generation = &sub->ns_generation();
        _ctrl = std::move(ctrl);
        _qid = 0;
        _depth = depth;
        _ctrl->add_queue_record({0, depth, info.reactor, info.id, info.peer});
        spdlog::info("conn {} ({}): {} created (admin queue depth {}, keep-alive {} ms{})", info.id, info.peer,
                     _ctrl->name(), depth, _ctrl->kato_ms.load(), sq_flow_disabled ? ", SQ flow control disabled" : "");
        finish(req, nvme::sc::success, _ctrl->cntlid | start_auth());
        return;
    }

    // I/O queue: join the controller the admin queue created.
    if (sub->is_discovery())
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_sqe(offsetof(nvme::connect_sqe, qid)),
                      "discovery controllers have no I/O queues");
    auto ctrl = sub->find_controller(d.cntlid);
    // `ready` is read before `dead`: the admin queue's close marks the controller dead before it
    // clears ready, so a Connect that finds it not ready because its association ended also
    // finds it dead, and is answered without DNR below rather than with Command Sequence Error.
    // `resets` before `ready`: a reset clears ready before it counts, so a queue that finds the
    // controller ready has the count of the last reset, and sees any later one.
    _resets_seen = ctrl ? ctrl->resets.load() : 0;
    const bool enabled = ctrl && ctrl->ready.load();
    if (!ctrl || ctrl->dead.load()) {
        // Without DNR: the association this Connect belongs to may have ended a moment ago (its
        // keep-alive expired, it was dropped through the management API) while the host was
        // still bringing up its I/O queues; Linux then reconnects, where DNR would make it delete
        // the controller and fail every I/O of its namespaces.
        spdlog::warn("conn {} ({}): Connect qid {} rejected: no live controller {} of {} for host {}", info.id,
                     info.peer, +c.qid, +d.cntlid, subnqn, host_label(hostnqn));
        finish(req, nvme::sc::connect_invalid_param, nvme::connect_ipo_data(offsetof(nvme::connect_data, cntlid)));
        return;
    }
    if (ctrl->hostnqn != hostnqn || ctrl->hostid != hostid)
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_data(offsetof(nvme::connect_data, cntlid)),
                      fmt::format("controller {} of {} is not host {}'s", +d.cntlid, subnqn, host_label(hostnqn)));
    if (!enabled) return reject(nvme::sc::command_sequence_error, 0, fmt::format("{} is not enabled", ctrl->name()));
    const uint16_t asked = ctrl->granted_io_queues.load();
    const uint16_t granted = asked ? asked : max_io_queues;
    if (c.qid > granted)
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_sqe(offsetof(nvme::connect_sqe, qid)),
                      fmt::format("qid {} beyond the {} I/O queues granted", +c.qid, granted));
    if (depth > max_queue_entries)
        return reject(nvme::sc::connect_invalid_param, nvme::connect_ipo_sqe(offsetof(nvme::connect_sqe, sqsize)),
                      fmt::format("SQSIZE {} exceeds MQES {}", +c.sqsize, max_queue_entries - 1));
    if (!ctrl->claim_queue(c.qid)) {
        spdlog::warn("conn {} ({}): Connect rejected: qid {} of {} already connected", info.id, info.peer, +c.qid,
                     ctrl->name());
        // Command Sequence Error, as nvmet and SPDK answer a QID already created (Controller Busy
        // means the controller cannot take the association).
        finish(req, nvme::sc::command_sequence_error | nvme::status_dnr);
        return;
    }
    if (auth_wanted(*sub, hostnqn)) _conn.set_auth_pending(true);
    const bool c2h_success =
        sq_flow_disabled || _tgt.c2h_success() == target::c2h_success_policy::always;  // I/O queues only
    if (!_conn.configure_queue(c.qid, depth, sq_flow_disabled, c2h_success)) {
        ctrl->release_queue(c.qid);
        spdlog::warn("conn {} ({}): Connect qid {} rejected: buffer pool exhausted", info.id, info.peer, +c.qid);
        finish(req, nvme::sc::connect_ctrl_busy);
        return;
    }
    // Backend queues, one per namespace, owned by this reactor alone (for an SSD: a hardware
    // queue pair of its own, created by the controller's admin thread: the Connect is answered
    // by advance_connect() once every queue is set up, now or from a later poll()).
    _subsys = sub;
    _ns_generation = &sub->ns_generation();
    _depth = depth;
    drop_bindings();  // a Connect retried after a failure
    nvme::queue_group group;
    _counter_labels = {sub->nqn(), ctrl->hostnqn, ctrl->cntlid, c.qid, 0};
    std::string why;
    if (!resync_namespaces(group, why)) {
        drop_bindings();
        ctrl->release_queue(c.qid);
        spdlog::error("conn {} ({}): Connect qid {} of {} rejected: {}", info.id, info.peer, +c.qid, ctrl->name(), why);
        finish(req, nvme::sc::connect_ctrl_busy | nvme::status_dnr);
        return;
    }
    _connecting = pending_connect{&req, std::move(ctrl), c.qid, depth};
    _backend_busy = true;
    advance_connect();
}

void queue::drop_bindings() {
    // Nothing was submitted, so no buffer is at stake; a store's queue keeps what its device
    // may still use until the device has let go of it.
    for (auto& b : _ns) unbind(b);
    _ns.clear();
    _bindings_busy = 0;
    _resync_pending = false;
}

void queue::advance_connect() {
    const auto& info = _conn.info();
    auto& p = *_connecting;
    std::string why;
    uint32_t failed_nsid = 0;
    for (uint32_t nsid = 0; nsid < _ns.size() && !failed_nsid; ++nsid) {
        ns_binding& b = _ns[nsid];
        if (b.st != ns_binding::state::setting_up) continue;
        switch (b.bq->setup(why)) {
            case nvme::block_queue::setup_state::pending:
                return;
            case nvme::block_queue::setup_state::failed:
                failed_nsid = nsid;
                break;
            case nvme::block_queue::setup_state::ready:
                b.st = ns_binding::state::active;
                --_bindings_busy;
                break;
        }
    }
    const bool torn_down = p.ctrl->dead.load() || p.ctrl->resets.load() != _resets_seen;
    if (!failed_nsid && torn_down) why = p.ctrl->name() + " was torn down or reset meanwhile";
    if (failed_nsid || !why.empty()) {
        spdlog::error("conn {} ({}): Connect qid {} of {} rejected: {}{}", info.id, info.peer, +p.qid, p.ctrl->name(),
                      failed_nsid ? fmt::format("namespace {}: ", failed_nsid) : std::string(), why);
        drop_bindings();
        p.ctrl->release_queue(p.qid);
        auto& req = *p.req;
        _connecting.reset();
        _backend_busy = false;
        // A controller torn down meanwhile: without DNR, so that the host reconnects (as above),
        // also when a namespace's setup failed with it (its hardware queue's creation may have
        // failed because of the teardown); a setup failure of a live controller keeps DNR.
        const bool no_retry = failed_nsid && !torn_down;
        finish(req, static_cast<uint16_t>(nvme::sc::connect_ctrl_busy | (no_retry ? nvme::status_dnr : 0)));
        return;
    }
    std::string backing;
    for (uint32_t nsid = 0; nsid < _ns.size(); ++nsid)
        if (_ns[nsid].bq)
            if (auto d = _ns[nsid].bq->describe(); !d.empty()) backing += fmt::format("; namespace {} on {}", nsid, d);
    const uint16_t depth = p.depth;
    auto& req = *p.req;
    _slots.resize(depth + 1u);
    _ctrl = std::move(p.ctrl);
    _qid = p.qid;
    _ctrl->io_queues_alive.fetch_add(1);  // until ~queue
    _connecting.reset();
    _backend_busy = false;
    _ctrl->last_traffic_ns.store(env::now_ns());
    _ctrl->add_queue_record({_qid, depth, info.reactor, info.id, info.peer});
    spdlog::info("conn {} ({}): {}: I/O queue {} connected (depth {}{}{}){}", info.id, info.peer, _ctrl->name(), _qid,
                 depth, _conn.negotiated_digests().header ? ", header digest" : "",
                 _conn.negotiated_digests().data ? ", data digest" : "", backing);
    finish(req, nvme::sc::success, _ctrl->cntlid | start_auth());
}

namespace {
// CC.EN cleared or a shutdown asked: I/O stops at once (`ready`), the I/O queues close as they
// see `resets` move (a command, or their next timer tick).
void begin_reset(controller& c, const char* why) {
    spdlog::info("{}: {}; its I/O queues close", c.name(), why);
    c.ready.store(false);
    c.resets.fetch_add(1);  // after ready: see exec_connect
    c.reset_pending = true;
}
}  // namespace

void queue::exec_property_get(transport::request& req) {
    const auto& p = reinterpret_cast<const nvme::property_sqe&>(req.cmd);
    const bool eight = p.attrib & 1;
    if (p.attrib & ~1u) return finish(req, nvme::sc::invalid_field | nvme::status_dnr);
    uint64_t v;
    switch (p.offset) {
        case nvme::reg::cap:  // read as 4 bytes: its lower half
            v = cap_value();
            break;
        case nvme::reg::cap + 4:  // CAP's upper half read on its own, 4 bytes (as SPDK serves it)
            if (eight) return finish(req, nvme::sc::invalid_field | nvme::status_dnr);
            v = cap_value() >> 32;
            break;
        case nvme::reg::vs:
            v = version;
            break;
        case nvme::reg::cc:
            v = _ctrl->cc;
            break;
        case nvme::reg::csts:
            settle_reset();
            v = _ctrl->csts;
            break;
        default:
            return finish(req, nvme::sc::invalid_field | nvme::status_dnr);
    }
    if (eight && p.offset != nvme::reg::cap) return finish(req, nvme::sc::invalid_field | nvme::status_dnr);
    finish(req, nvme::sc::success, static_cast<uint32_t>(v), eight ? static_cast<uint32_t>(v >> 32) : 0);
}

void queue::exec_property_set(transport::request& req) {
    const auto& p = reinterpret_cast<const nvme::property_sqe&>(req.cmd);
    if (p.offset != nvme::reg::cc || (p.attrib & 1)) return finish(req, nvme::sc::invalid_field | nvme::status_dnr);
    apply_cc(static_cast<uint32_t>(p.value));
    finish(req, nvme::sc::success);
}

void queue::apply_cc(uint32_t v) {
    controller& c = *_ctrl;
    const uint32_t old = c.cc;
    c.cc = v;
    if ((v & nvme::cc::en) && !(old & nvme::cc::en)) {
        const bool io = !c.subsys.is_discovery();
        const bool bad = nvme::cc::mps(v) != 0 || nvme::cc::ams(v) != 0 || nvme::cc::css(v) != 0 ||
                         (io && (nvme::cc::iosqes(v) != 6 || nvme::cc::iocqes(v) != 4));
        if (bad) {
            spdlog::warn("{}: enable with unsupported CC {:#x}; controller fatal status set", c.name(), v);
            c.csts |= nvme::csts::cfs;
        } else {
            c.csts |= nvme::csts::rdy;
            c.ready.store(true);
        }
    } else if (!(v & nvme::cc::en) && (old & nvme::cc::en)) {
        // A controller reset: the I/O queues are deleted (they close, outstanding commands
        // unanswered, as SPDK disconnects them); RDY clears once they are gone (settle_reset).
        c.csts &= ~nvme::csts::cfs;
        begin_reset(c, "disabled by the host (CC.EN cleared)");
    }
    if (nvme::cc::shn(v) && !nvme::cc::shn(old)) {
        // Shutdown: the I/O queues end as in a reset; SHST says occurring until they are gone.
        c.csts = (c.csts & ~nvme::csts::shst_mask) | nvme::csts::shst_occurring;
        begin_reset(c, "shutdown requested by the host");
    } else if (!nvme::cc::shn(v)) {
        c.csts &= ~nvme::csts::shst_mask;
    }
    settle_reset();
}

void queue::settle_reset() {
    controller& c = *_ctrl;
    if (!c.reset_pending || c.has_io_queues() || c.io_queues_alive.load() != 0) return;
    c.reset_pending = false;
    if (!(c.cc & nvme::cc::en)) c.csts &= ~nvme::csts::rdy;
    if (nvme::cc::shn(c.cc)) c.csts = (c.csts & ~nvme::csts::shst_mask) | nvme::csts::shst_complete;
    spdlog::info("{}: {} complete: no I/O queue left", c.name(), nvme::cc::shn(c.cc) ? "shutdown" : "reset");
}

}  // namespace ferry::target
