// The gateway group's coordination (mgmt/gateway_group.hh) through one RADOS object's OMAP:
//
//   gw.<name>     {"ana_group", "heartbeat_ms", "cntlid_min", "cntlid_max", "subsystem"}: a
//                 member (written at its start)
//   hb.<name>     its heartbeat: "<token>:<counter>", moved every heartbeat_ms by compare-and-set
//                 on the last value; "fenced:..." while blocklisted; "stopped" when it stopped
//   owner.<g>     the gateway that owns ANA group g ("" or absent: nobody)
//   want.<g>      g's home gateway asks its owner to hand g back
//   ns.<nsid>     a namespace of the subsystem, as the configuration file has it ("nsmap" says
//                 the group has a namespace map at all)
//
// The namespace map is the group's: a gateway that starts takes it (adds what it lacks,
// removes what the group no longer has) before it serves; the first gateway of a group seeds
// it from its configuration. Afterwards a namespace added or removed through one gateway's
// REST API is published and the others follow at their next look (rbd images opened by each
// gateway itself, with its own ceph_conf and client).
//
// Liveness is judged by each gateway on its own clock (a peer is dead when its beat has not
// moved for dead_after_ms, or three of its own beats), so no clocks need to agree. Ownership moves only by compare-and-set
// on owner.<g>; the new owner then breaks the image locks, which fences the old one even when
// it was only slow (a false "dead" costs a fail-over, never data). Watch/notify wakes peers when
// ownership moves, so a hand-over does not wait for their next look.
#include "mgmt/gateway_group.hh"

#include <fmt/format.h>
#include <rados/librados.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "env/thread.hh"
#include "mgmt/config.hh"
#include "nvme/block_queue.hh"
#include "target/ana.hh"
#include "target/subsystem.hh"
#include "target/target.hh"

namespace ferry::mgmt {

namespace {

using clock = std::chrono::steady_clock;
constexpr uint32_t watch_timeout_s = 30;
constexpr unsigned ana_transition_time_s = 10;  // Identify ANATT (target/admin_cmd.cc)

std::string random_token() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
}
using target::ana_state;

class rados_gateway_group final : public gateway_group {
public:
    rados_gateway_group(const gateway_config& cfg, target::target& tgt) : _cfg(cfg), _tgt(tgt) {
        _who = fmt::format("gateway {} of group {}", _cfg.name, _cfg.group);
        _oid = "ferry.gateway_group." + _cfg.group;
        check_subsystem();
        try {
            connect();
            register_member();
            take_namespace_map();
            std::vector<uint32_t> all;
            for (uint32_t g = 1; g <= target::max_ana_groups; ++g) all.push_back(g);
            _tgt.set_ana_manager(all, _who);
            for (uint32_t g : all) _tgt.set_managed_ana_state(g, ana_state::inaccessible, false);
            _tgt.set_cntlid_range(_cfg.cntlid_min, _cfg.cntlid_max);
        } catch (...) {
            disconnect();  // before this object goes: the watch's callbacks point at it
            throw;
        }
        spdlog::info(
            "{}: member of RADOS object {}/{} (CNTLIDs {}..{}, home ANA group {}); every ANA group is "
            "inaccessible until this gateway holds its images' locks",
            _who, _cfg.pool, _oid, _cfg.cntlid_min, _cfg.cntlid_max, _cfg.ana_group);
    }
    ~rados_gateway_group() override {
        stop();
        disconnect();
    }

    void start() override {
        _beat_thread = std::thread([this] {
            env::name_current_thread("ferry-gw-beat");
            beat_loop();
        });
        _thread = std::thread([this] {
            env::name_current_thread("ferry-gateway");
            run();
        });
    }

    void stop() override {
        {
            std::lock_guard g(_wake_lock);
            if (_stopping) return;
            _stopping = true;
        }
        _wake.notify_all();
        _beat_wake.notify_all();
        if (_thread.joinable()) _thread.join();
        if (_beat_thread.joinable()) _beat_thread.join();
        if (_io) hand_over_all();
    }

private:
    struct peer {
        std::string beat;  // last hb value seen
        clock::time_point moved{};
        uint32_t home = 0;
        unsigned heartbeat_ms = 1000;
    };

    // ---- Setup ---------------------------------------------------------------------------

    void check_subsystem() {
        auto s = find_subsystem();
        if (!s) throw std::runtime_error(_who + ": subsystem " + _cfg.subsystem + " is not in the configuration");
        // ANA states are per listener and group, whatever the subsystem: another subsystem on
        // this gateway's listeners would follow the group's states.
        for (const auto& other : _tgt.subsystems())
            if (other->nqn() != _cfg.subsystem)
                throw std::runtime_error(fmt::format(
                    "{}: the configuration also has subsystem {}: a gateway serves its group's subsystem only (ANA "
                    "states are per listener, so another subsystem would follow the group's)",
                    _who, other->nqn()));
        for (const auto& [nsid, n] : s->namespaces())
            if (!n.store->supports_exclusive_lock())
                throw std::runtime_error(fmt::format(
                    "{}: subsystem {} namespace {} is {}: a gateway group serves rbd images only (only they can be "
                    "fenced when a gateway is taken over)",
                    _who, _cfg.subsystem, nsid, n.store->describe()));
    }

    std::shared_ptr<target::subsystem> find_subsystem() const {
        for (const auto& s : _tgt.subsystems())
            if (s->nqn() == _cfg.subsystem) return s;
        return nullptr;
    }

    [[noreturn]] void fail(const std::string& what, int rc) const {
        throw std::runtime_error(fmt::format("{}: {}: {}", _who, what, std::strerror(-rc)));
    }

    void connect() {
        int rc = ::rados_create(&_cluster, _cfg.client.c_str());
        if (rc < 0) {
            _cluster = nullptr;
            fail("rados_create for client." + _cfg.client, rc);
        }
        rc = ::rados_conf_read_file(_cluster, _cfg.ceph_conf.empty() ? nullptr : _cfg.ceph_conf.c_str());
        if (rc < 0)
            fail("cannot read Ceph configuration " + (_cfg.ceph_conf.empty() ? "(default)" : _cfg.ceph_conf), rc);
        const std::string t = std::to_string(std::max(1u, _cfg.dead_after_ms / 1000));
        for (const auto& [k, v] : {std::pair<const char*, std::string>{"client_mount_timeout", "10"},
                                   {"rados_mon_op_timeout", "10"},
                                   {"rados_osd_op_timeout", t}}) {
            rc = ::rados_conf_set(_cluster, k, v.c_str());
            if (rc < 0) fail(fmt::format("rados_conf_set {}={}", k, v), rc);
        }
        rc = ::rados_connect(_cluster);
        if (rc < 0) {
            ::rados_shutdown(_cluster);
            _cluster = nullptr;
            fail("cannot connect to the cluster as client." + _cfg.client, rc);
        }
        rc = ::rados_ioctx_create(_cluster, _cfg.pool.c_str(), &_io);
        if (rc < 0) {
            _io = nullptr;
            fail("cannot open pool " + _cfg.pool, rc);
        }
        rados_write_op_t op = ::rados_create_write_op();
        ::rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, nullptr);
        rc = ::rados_write_op_operate(op, _io, _oid.c_str(), nullptr, 0);
        ::rados_release_write_op(op);
        if (rc < 0) fail("cannot create the group object " + _oid, rc);
        // Watches only wake peers early; liveness is the heartbeat's. The OSD's timeout for a
        // watch must exceed librados' ping interval, or a live watch is dropped: 30 s.
        rc = ::rados_watch3(_io, _oid.c_str(), &_watch, &rados_gateway_group::on_notify,
                            &rados_gateway_group::on_watch_error, watch_timeout_s, this);
        if (rc < 0) fail("cannot watch the group object " + _oid, rc);
    }

    void disconnect() {
        if (_io && _watch) ::rados_unwatch2(_io, _watch);
        _watch = 0;
        if (_cluster) ::rados_watch_flush(_cluster);
        if (_io) ::rados_ioctx_destroy(_io);
        _io = nullptr;
        if (_cluster) ::rados_shutdown(_cluster);
        _cluster = nullptr;
    }

    // Refuses a member whose CNTLIDs or home group another member has, then writes gw.<name>.
    void register_member() {
        auto kv = read_all();
        // Two live gateways of one name would each take the other's groups (and break each
        // other's locks) forever: a beat that still moves means the name is in use.
        if (auto hb = kv.find("hb." + _cfg.name); hb != kv.end() && hb->second != "stopped") {
            const std::string seen = hb->second;  // kv is read again below
            std::this_thread::sleep_for(std::chrono::milliseconds(std::min(_cfg.dead_after_ms, 2 * _cfg.heartbeat_ms)));
            kv = read_all();
            auto again = kv.find("hb." + _cfg.name);
            if (again != kv.end() && again->second != seen && again->second != "stopped")
                throw std::runtime_error(fmt::format(
                    "{}: another gateway named {} is alive in this group (its heartbeat moves); each gateway needs "
                    "its own name",
                    _who, _cfg.name));
        }
        for (const auto& [key, value] : kv) {
            if (key.rfind("gw.", 0) != 0 || key == "gw." + _cfg.name) continue;
            const std::string other = key.substr(3);
            nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
            if (!j.is_object()) continue;
            const uint32_t home = j.value("ana_group", 0u);
            const unsigned lo = j.value("cntlid_min", 0u), hi = j.value("cntlid_max", 0u);
            if (home == _cfg.ana_group)
                throw std::runtime_error(
                    fmt::format("{}: ANA group {} is the home group of gateway {} already (each gateway needs its own)",
                                _who, home, other));
            if (lo <= _cfg.cntlid_max && _cfg.cntlid_min <= hi)
                throw std::runtime_error(fmt::format(
                    "{}: CNTLIDs {}..{} overlap gateway {}'s {}..{} (a host refuses a second path with a CNTLID "
                    "it has seen in the subsystem)",
                    _who, _cfg.cntlid_min, _cfg.cntlid_max, other, lo, hi));
        }
        _token = random_token();
        _last_beat = _token + ":0";
        _last_beat_ok.store(clock::now().time_since_epoch().count());
        nlohmann::json me = {{"ana_group", _cfg.ana_group},
                             {"heartbeat_ms", _cfg.heartbeat_ms},
                             {"cntlid_min", _cfg.cntlid_min},
                             {"cntlid_max", _cfg.cntlid_max},
                             {"subsystem", _cfg.subsystem}};
        set_keys({{"gw." + _cfg.name, me.dump()}, {"hb." + _cfg.name, _last_beat}});
    }

    // ---- The namespace map ------------------------------------------------------------------

    static std::string ns_key(uint32_t nsid) { return fmt::format("ns.{}", nsid); }

    // What the group object says of one namespace, as this gateway opens it (its own Ceph
    // configuration file and client: the publishing gateway's paths need not exist here).
    target::namespace_config shared_namespace(uint32_t nsid, const std::string& text) const {
        auto j = nlohmann::json::parse(text, nullptr, false);
        if (!j.is_object()) throw std::runtime_error(fmt::format("{}: {} in {} is not JSON", _who, ns_key(nsid), _oid));
        auto cfg = parse_namespace(j, fmt::format("/ns.{}", nsid), _oid, nsid);
        if (cfg.backend != target::backend_kind::rbd)
            throw std::runtime_error(fmt::format("{}: {} in {} is not an rbd namespace", _who, ns_key(nsid), _oid));
        cfg.rbd.ceph_conf = _cfg.ceph_conf;
        cfg.rbd.client = _cfg.client;
        return cfg;
    }

    std::map<uint32_t, target::namespace_config> local_namespaces() const {
        std::map<uint32_t, target::namespace_config> out;
        if (auto s = find_subsystem())
            for (const auto& [nsid, n] : s->namespaces()) {
                out[nsid] = n.config;
                out[nsid].ana_group = n.ana_group.load();
            }
        return out;
    }

    std::map<uint32_t, std::string> shared_namespaces(const std::map<std::string, std::string>& kv) const {
        std::map<uint32_t, std::string> out;
        for (const auto& [key, value] : kv)
            if (key.rfind("ns.", 0) == 0) {
                char* end = nullptr;
                const unsigned long nsid = std::strtoul(key.c_str() + 3, &end, 10);
                if (end && *end == 0 && nsid >= 1 && nsid <= 0xFFFFFFFEul) out[uint32_t(nsid)] = value;
            }
        return out;
    }

    // One NSID names one image in one ANA group on every gateway (hosts see one NGUID for it).
    static bool same_namespace(const target::namespace_config& a, const target::namespace_config& b) {
        return a.rbd.pool == b.rbd.pool && a.rbd.image == b.rbd.image && a.ana_group == b.ana_group;
    }

    std::string publish_text(const target::namespace_config& n) const {
        auto j = to_json(n);
        j.erase("ceph_conf");  // each gateway uses its own
        j.erase("client");
        return j.dump();
    }

    // At start, before serving: the group's map wins (a gateway that was down missed changes).
    // The first gateway of a group publishes its configuration's namespaces instead. A
    // namespace whose NSID the group gives another image is refused (the operator decides).
    void take_namespace_map() {
        auto kv = read_all();
        auto local = local_namespaces();
        if (!kv.count("nsmap")) {
            // Seeded once: two first gateways starting together cannot both (compare-and-set).
            std::vector<std::pair<std::string, std::string>> put{{"nsmap", "1"}};
            for (const auto& [nsid, n] : local) put.emplace_back(ns_key(nsid), publish_text(n));
            const std::string key = "nsmap", none;
            const int rc = write_keys(put, {}, &key, &none);
            if (rc == 0) {
                for (const auto& [nsid, n] : local) _synced.insert(nsid);
                spdlog::info("{}: seeded the group's namespace map with {} namespace(s) of {}", _who, local.size(),
                             _cfg.subsystem);
                return;
            }
            if (rc != -ECANCELED) fail("cannot seed the namespace map in " + _oid, rc);
            kv = read_all();  // another gateway seeded it meanwhile: take that one
        }
        const auto shared = shared_namespaces(kv);
        for (const auto& [nsid, text] : shared) {
            auto cfg = shared_namespace(nsid, text);
            auto it = local.find(nsid);
            if (it != local.end() && !same_namespace(it->second, cfg))
                throw std::runtime_error(fmt::format(
                    "{}: namespace {} is {}/{} in ANA group {} here but {}/{} in ANA group {} in the group's "
                    "namespace map ({}); fix the configuration or remove the namespace through a running gateway",
                    _who, nsid, it->second.rbd.pool, it->second.rbd.image, it->second.ana_group, cfg.rbd.pool,
                    cfg.rbd.image, cfg.ana_group, _oid));
        }
        for (const auto& [nsid, n] : local)
            if (!shared.count(nsid)) {
                spdlog::warn(
                    "{}: namespace {} ({}/{}) is not in the group's namespace map: removed (it was removed "
                    "through another gateway, or add it through the REST API)",
                    _who, nsid, n.rbd.pool, n.rbd.image);
                _tgt.remove_namespace(_cfg.subsystem, nsid);
            }
        for (const auto& [nsid, text] : shared) {
            if (!local.count(nsid)) {
                _tgt.add_namespace(_cfg.subsystem, shared_namespace(nsid, text));
                spdlog::info("{}: namespace {} added from the group's namespace map", _who, nsid);
            }
            _synced.insert(nsid);
        }
    }

    // Two-way: a namespace both had at the last look and one side lost was removed there.
    void sync_namespaces(const std::map<std::string, std::string>& kv) {
        const auto local = local_namespaces();
        const auto shared = shared_namespaces(kv);
        std::set<uint32_t> all;
        for (const auto& [nsid, n] : local) all.insert(nsid);
        for (const auto& [nsid, t] : shared) all.insert(nsid);
        bool changed = false;
        std::set<uint32_t> synced;
        for (uint32_t nsid : all) {
            const bool here = local.count(nsid), there = shared.count(nsid), was = _synced.count(nsid);
            try {
                if (here && there) {
                    if (!same_namespace(local.at(nsid), shared_namespace(nsid, shared.at(nsid)))) {
                        // The group's record wins (added through another gateway at the same time
                        // under this NSID, or replaced there): this one goes, the next look adds the
                        // group's.
                        spdlog::error(
                            "{}: namespace {} differs from the group's record of it: removed here, the "
                            "group's is added next",
                            _who, nsid);
                        _tgt.remove_namespace(_cfg.subsystem, nsid);
                        continue;
                    }
                    synced.insert(nsid);
                } else if (here && was) {
                    spdlog::info("{}: namespace {} was removed through another gateway: removing it", _who, nsid);
                    _tgt.remove_namespace(_cfg.subsystem, nsid);
                } else if (here) {
                    const auto& n = local.at(nsid);
                    if (n.backend != target::backend_kind::rbd) {
                        if (_unshared.insert(nsid).second)
                            spdlog::warn("{}: namespace {} is not an rbd image: served by this gateway alone", _who,
                                         nsid);
                        continue;
                    }
                    // Only if the NSID is still free in the group: the same NSID added through
                    // two gateways at once must not name two images.
                    const std::string key = ns_key(nsid), none;
                    const int rc = write_keys({{key, publish_text(n)}}, {}, &key, &none);
                    if (rc == -ECANCELED) {
                        spdlog::error(
                            "{}: namespace {} ({}/{}) was added through another gateway at the same time "
                            "with another image: removed here, the group's is added next",
                            _who, nsid, n.rbd.pool, n.rbd.image);
                        _tgt.remove_namespace(_cfg.subsystem, nsid);
                        continue;
                    }
                    if (rc < 0) fail("cannot publish " + key, rc);
                    spdlog::info("{}: namespace {} ({}/{}) published to the group", _who, nsid, n.rbd.pool,
                                 n.rbd.image);
                    synced.insert(nsid);
                    changed = true;
                } else if (was) {
                    if (int rc = write_keys({}, {ns_key(nsid)}); rc < 0) fail("cannot remove " + ns_key(nsid), rc);
                    spdlog::info("{}: namespace {} removed here: removed from the group", _who, nsid);
                    changed = true;
                } else {
                    _tgt.add_namespace(_cfg.subsystem, shared_namespace(nsid, shared.at(nsid)));
                    spdlog::info("{}: namespace {} added through another gateway: added", _who, nsid);
                    synced.insert(nsid);
                }
            } catch (const std::exception& e) {
                if (_failed_ns.insert(nsid).second) spdlog::error("{}: namespace {}: {}", _who, nsid, e.what());
                continue;
            }
            _failed_ns.erase(nsid);
        }
        _synced = std::move(synced);
        if (changed) notify_peers();
    }

    // ---- RADOS object access (the coordination thread, or setup/stop) ----------------------

    std::map<std::string, std::string> read_all() const {
        std::map<std::string, std::string> out;
        std::string after;
        for (;;) {
            rados_read_op_t op = ::rados_create_read_op();
            rados_omap_iter_t it = nullptr;
            unsigned char more = 0;
            int prval = 0;
            ::rados_read_op_omap_get_vals2(op, after.c_str(), "", 512, &it, &more, &prval);
            int rc = ::rados_read_op_operate(op, _io, _oid.c_str(), 0);
            if (rc >= 0 && prval < 0) rc = prval;
            if (rc < 0) {
                if (it) ::rados_omap_get_end(it);
                ::rados_release_read_op(op);
                fail("cannot read the group object " + _oid, rc);
            }
            char *k = nullptr, *v = nullptr;
            size_t kl = 0, vl = 0;
            while (::rados_omap_get_next2(it, &k, &v, &kl, &vl) == 0 && k) {
                after.assign(k, kl);
                out[after] = std::string(v ? v : "", vl);
            }
            ::rados_omap_get_end(it);
            ::rados_release_read_op(op);
            if (!more) return out;
        }
    }

    int write_keys(const std::vector<std::pair<std::string, std::string>>& kv,
                   const std::vector<std::string>& remove = {}, const std::string* cmp_key = nullptr,
                   const std::string* cmp_value = nullptr) const {
        rados_write_op_t op = ::rados_create_write_op();
        int cmp_rc = 0;
        if (cmp_key)
            ::rados_write_op_omap_cmp2(op, cmp_key->c_str(), LIBRADOS_CMPXATTR_OP_EQ, cmp_value->data(),
                                       cmp_key->size(), cmp_value->size(), &cmp_rc);
        std::vector<const char*> keys, vals, rm;
        std::vector<size_t> kls, vls, rml;
        for (const auto& [k, v] : kv) {
            keys.push_back(k.c_str());
            kls.push_back(k.size());
            vals.push_back(v.data());
            vls.push_back(v.size());
        }
        if (!kv.empty()) ::rados_write_op_omap_set2(op, keys.data(), vals.data(), kls.data(), vls.data(), kv.size());
        for (const auto& k : remove) {
            rm.push_back(k.c_str());
            rml.push_back(k.size());
        }
        if (!remove.empty()) ::rados_write_op_omap_rm_keys2(op, rm.data(), rml.data(), rm.size());
        int rc = ::rados_write_op_operate(op, _io, _oid.c_str(), nullptr, 0);
        ::rados_release_write_op(op);
        return rc;
    }

    void set_keys(const std::vector<std::pair<std::string, std::string>>& kv) const {
        if (int rc = write_keys(kv); rc < 0) fail("cannot write the group object " + _oid, rc);
    }

    // owner.<g>: `from` -> `to` only if it still says `from` (absent reads as ""). True if moved.
    bool move_owner(uint32_t g, const std::string& from, const std::string& to, bool drop_want) {
        const std::string key = fmt::format("owner.{}", g);
        std::vector<std::string> rm;
        if (drop_want) rm.push_back(fmt::format("want.{}", g));
        int rc = write_keys({{key, to}}, rm, &key, &from);
        if (rc == -ECANCELED) {
            spdlog::info("{}: ANA group {} changed owner under us (it no longer says '{}')", _who, g, from);
            return false;
        }
        if (rc < 0) {
            spdlog::warn("{}: cannot move ANA group {} from '{}' to '{}': {}", _who, g, from, to, std::strerror(-rc));
            return false;
        }
        return true;
    }

    // Wakes the peers (their watch callbacks) so they look now rather than at their next beat.
    void notify_peers() const {
        char* reply = nullptr;
        size_t reply_len = 0;
        int rc = ::rados_notify2(_io, _oid.c_str(), "look", 4, 1000, &reply, &reply_len);
        if (reply) ::rados_buffer_free(reply);
        if (rc < 0 && rc != -ETIMEDOUT) spdlog::debug("{}: notify: {}", _who, std::strerror(-rc));
    }

    static void on_notify(void* arg, uint64_t notify_id, uint64_t cookie, uint64_t, void*, size_t) {
        auto* self = static_cast<rados_gateway_group*>(arg);
        ::rados_notify_ack(self->_io, self->_oid.c_str(), notify_id, cookie, nullptr, 0);
        self->wake();
    }
    static void on_watch_error(void* arg, uint64_t, int err) {
        auto* self = static_cast<rados_gateway_group*>(arg);
        spdlog::warn("{}: the watch on the group object failed ({}); watching again", self->_who, std::strerror(-err));
        self->_rewatch.store(true);
        self->wake();
    }
    void wake() {
        {
            std::lock_guard g(_wake_lock);
            _woken = true;
        }
        _wake.notify_all();
    }

    // ---- The coordination loop ------------------------------------------------------------

    // The heartbeat has a thread of its own, so that a long take (many images, a slow break)
    // does not make this gateway look dead. Each beat is a compare-and-set on the previous one:
    // another live process of this name (a second instance, or this one's successor after a
    // pause) makes it fail, and this one then stops coordinating.
    void beat_loop() {
        for (;;) {
            {
                std::unique_lock g(_wake_lock);
                _beat_wake.wait_for(g, std::chrono::milliseconds(_cfg.heartbeat_ms), [&] { return _stopping; });
                if (_stopping) return;
            }
            const auto issued = clock::now();
            const std::string key = "hb." + _cfg.name;
            const std::string next = fmt::format("{}{}:{}", _fenced.load() ? "fenced:" : "", _token, ++_beat);
            const int rc = write_keys({{key, next}}, {}, &key, &_last_beat);
            if (rc == 0) {
                _last_beat = next;
                _last_beat_ok.store(issued.time_since_epoch().count());
            } else if (rc == -ECANCELED) {
                if (!_displaced.exchange(true))
                    spdlog::error(
                        "{}: another ferryd wrote this gateway's heartbeat: it runs under the same name; "
                        "this one gives its groups up and stops coordinating",
                        _who);
                wake();
                return;
            } else {
                spdlog::warn("{}: heartbeat not written: {}", _who, std::strerror(-rc));
            }
        }
    }

    void run() {
        for (;;) {
            {
                std::unique_lock g(_wake_lock);
                _wake.wait_for(g, std::chrono::milliseconds(_cfg.heartbeat_ms), [&] { return _woken || _stopping; });
                if (_stopping) return;
                _woken = false;
            }
            if (_displaced.load()) {
                give_up_all("another ferryd runs under this gateway's name");
                continue;
            }
            if (_rewatch.exchange(false)) {
                if (_watch) ::rados_unwatch2(_io, _watch);
                _watch = 0;
                int rc = ::rados_watch3(_io, _oid.c_str(), &_watch, &rados_gateway_group::on_notify,
                                        &rados_gateway_group::on_watch_error, watch_timeout_s, this);
                if (rc < 0) {
                    _watch = 0;
                    _rewatch.store(true);
                    spdlog::warn("{}: cannot watch the group object again: {}", _who, std::strerror(-rc));
                }
            }
            // Peers may take over once this beat has stood still for their dead_after_ms: give
            // the groups up a beat before that (their locks may be broken next).
            const auto last_ok = clock::time_point(clock::duration(_last_beat_ok.load()));
            if (clock::now() - last_ok > std::chrono::milliseconds(_cfg.dead_after_ms - _cfg.heartbeat_ms)) {
                give_up_all("its heartbeat has not been written for dead_after_ms less one beat");
                continue;
            }
            try {
                reconcile(read_all(), clock::now());
            } catch (const std::exception& e) {
                spdlog::warn("{}", e.what());
            }
        }
    }

    // A peer is dead when its beat stood still longer than this gateway's dead_after_ms, or three
    // of the peer's own beats, whichever is longer (gateways may be configured differently).
    std::chrono::milliseconds dead_after(const peer& p) const {
        return std::chrono::milliseconds(std::max<uint64_t>(_cfg.dead_after_ms, 3ull * p.heartbeat_ms));
    }
    bool alive(const std::string& name, clock::time_point now) const {
        if (name == _cfg.name) return true;
        auto it = _peers.find(name);
        if (it == _peers.end() || it->second.beat == "stopped") return false;
        return now - it->second.moved < dead_after(it->second);
    }
    // Alive and able to hold locks: a fenced gateway (blocklisted, waiting for a restart) beats
    // "fenced:..." and is given no group.
    bool eligible(const std::string& name, clock::time_point now) const {
        if (name == _cfg.name) return !_fenced.load() && !_displaced.load();
        auto it = _peers.find(name);
        return alive(name, now) && it->second.beat.rfind("fenced:", 0) != 0;
    }

    void reconcile(const std::map<std::string, std::string>& kv, clock::time_point now) {
        sync_namespaces(kv);
        // Peers: who is registered, whose beat moved.
        std::set<std::string> members;
        for (const auto& [key, value] : kv) {
            if (key.rfind("gw.", 0) != 0) continue;
            const std::string name = key.substr(3);
            members.insert(name);
            if (name == _cfg.name) continue;
            auto j = nlohmann::json::parse(value, nullptr, false);
            auto hb = kv.find("hb." + name);
            const std::string beat = hb == kv.end() ? "" : hb->second;
            auto [it, fresh] = _peers.try_emplace(name);
            it->second.home = j.is_object() ? j.value("ana_group", 0u) : 0;
            it->second.heartbeat_ms = j.is_object() ? j.value("heartbeat_ms", 1000u) : 1000u;
            // First sight counts as a move: a peer is given its dead time before it is judged.
            if (fresh || beat != it->second.beat) {
                const bool was_alive = !fresh && alive(name, now);
                it->second.beat = beat;
                it->second.moved = now;
                if (beat == "stopped") {
                    if (!fresh) spdlog::info("{}: gateway {} stopped", _who, name);
                } else if (!fresh && !was_alive) {
                    spdlog::info("{}: gateway {} is alive again", _who, name);
                }
            } else if (it->second.beat != "stopped" && now - it->second.moved >= dead_after(it->second) &&
                       _reported_dead.insert(name).second) {
                spdlog::warn("{}: gateway {} is dead (no heartbeat for {} ms)", _who, name,
                             dead_after(it->second).count());
            }
            if (alive(name, now)) _reported_dead.erase(name);
        }
        auto home_of = [&](uint32_t g) -> std::string {
            if (g == _cfg.ana_group) return _cfg.name;
            for (const auto& [name, p] : _peers)
                if (p.home == g && members.count(name)) return name;
            return {};
        };
        auto value = [&](const std::string& key) {
            auto it = kv.find(key);
            return it == kv.end() ? std::string() : it->second;
        };

        // Its home group, its namespaces' groups, and every member's home group (a member that
        // stops hands its home group over, and a dead one's must be owned by someone).
        std::set<uint32_t> groups{_cfg.ana_group};
        for (const auto& [name, p] : _peers)
            if (members.count(name) && target::valid_ana_group(p.home)) groups.insert(p.home);
        auto s = find_subsystem();
        if (s)
            for (const auto& [nsid, n] : s->namespaces()) groups.insert(n.ana_group.load());
        for (uint32_t g : groups) {
            const std::string owner = value(fmt::format("owner.{}", g));
            const std::string want = value(fmt::format("want.{}", g));
            const std::string home = home_of(g);
            const bool held = _held.count(g);
            // Given up because this gateway's beat stood still: if the group has another owner
            // now, this gateway was judged dead and its locks broken (blocklisted).
            const bool lost = _lost.erase(g) > 0;
            if (owner == _cfg.name) {
                if (_fenced.load()) {
                    // Blocklisted: it cannot hold the locks; let a peer have the group.
                    if (held) give_up(g, "this gateway is fenced");
                    if (move_owner(g, _cfg.name, "", false)) {
                        spdlog::error(
                            "{}: ANA group {} given up: this gateway's Ceph clients are blocklisted; "
                            "restart ferryd to serve again",
                            _who, g);
                        notify_peers();
                    }
                } else if (!held) {
                    take(g);
                } else if (check_locks(g)) {
                    if (!home.empty() && home != _cfg.name && want == home && eligible(home, now))
                        hand_over(g, home, "its home gateway asked for it back");
                }
                continue;
            }
            if (held || lost) {
                // Another gateway owns it now: this one was judged dead and its locks broken.
                if (held) give_up(g, "another gateway owns it");
                _fenced.store(true);
                spdlog::error(
                    "{}: gateway {} took ANA group {} over (this gateway was judged dead); its images' "
                    "locks were broken and this gateway's clients of them are blocklisted: restart ferryd "
                    "to serve them again",
                    _who, owner, g);
                continue;
            }
            if (owner.empty() || !alive(owner, now)) {
                std::string taker = (!home.empty() && eligible(home, now)) ? home : std::string();
                if (taker.empty())
                    for (const auto& m : members)
                        if (eligible(m, now)) {
                            taker = m;  // the first eligible member by name: every gateway picks the same
                            break;
                        }
                if (taker == _cfg.name && move_owner(g, owner, _cfg.name, true)) {
                    spdlog::info("{}: takes ANA group {} over from {}", _who, g,
                                 owner.empty() ? std::string("nobody") : "dead gateway " + owner);
                    take(g);
                    notify_peers();
                }
                continue;
            }
            if (g == _cfg.ana_group && want != _cfg.name && eligible(_cfg.name, now)) {
                spdlog::info("{}: asks gateway {} to hand its home ANA group {} back", _who, owner, g);
                set_keys({{fmt::format("want.{}", g), _cfg.name}});
                notify_peers();
            }
        }
    }

    // The group's namespaces whose store can be fenced (others are served by this gateway alone
    // and need no lock).
    std::vector<std::shared_ptr<const target::ns>> namespaces_of(uint32_t g) const {
        std::vector<std::shared_ptr<const target::ns>> out;
        auto s = find_subsystem();
        if (!s) return out;
        auto snap = s->namespaces();
        for (const auto& [nsid, n] : snap.table())
            if (n->ana_group.load() == g && n->store->supports_exclusive_lock()) out.push_back(n);
        return out;
    }

    // owner.<g> still names this gateway (a compare that writes nothing).
    bool still_owner(uint32_t g) {
        const std::string key = fmt::format("owner.{}", g);
        const int rc = write_keys({}, {}, &key, &_cfg.name);
        if (rc == 0) return true;
        if (rc != -ECANCELED)
            spdlog::warn("{}: ANA group {}: cannot confirm ownership: {}", _who, g, std::strerror(-rc));
        return false;
    }

    // Owner of `g` by the group object: through change, take every image's lock (breaking, and
    // so fencing, a previous holder), then optimized. Ownership is confirmed before the first
    // break and before optimized (a peer may have moved it since the look began). Change lasts
    // at most half of ANATT: a slower take goes on with the group inaccessible. On failure the
    // group stays inaccessible and the next look tries again; a blocklisted client fences this
    // gateway.
    void take(uint32_t g) {
        if (!still_owner(g)) return;
        const auto start = clock::now();
        bool in_change = true;
        _tgt.set_managed_ana_state(g, ana_state::change);
        try {
            for (const auto& n : namespaces_of(g)) {
                const std::string broken = n->store->acquire_exclusive_lock(true);
                if (!broken.empty())
                    spdlog::warn("{}: ANA group {}: broke the lock of {} held by {} (that client is blocklisted)", _who,
                                 g, n->store->describe(), broken);
                _locked[g].insert(n->store.get());
                if (in_change && clock::now() - start > std::chrono::seconds(ana_transition_time_s / 2)) {
                    _tgt.set_managed_ana_state(g, ana_state::inaccessible);
                    in_change = false;
                }
            }
        } catch (const nvme::fenced_error& e) {
            _tgt.set_managed_ana_state(g, ana_state::inaccessible);
            _fenced.store(true);
            spdlog::error("{}: ANA group {}: {}: this gateway is fenced; restart ferryd to serve again", _who, g,
                          e.what());
            return;
        } catch (const std::exception& e) {
            _tgt.set_managed_ana_state(g, ana_state::inaccessible);
            spdlog::error("{}: ANA group {} stays inaccessible: {}", _who, g, e.what());
            return;
        }
        if (!still_owner(g)) {
            _tgt.set_managed_ana_state(g, ana_state::inaccessible);
            release_locks(g);
            return;
        }
        _held.insert(g);
        _tgt.set_managed_ana_state(g, ana_state::optimized);
    }

    // A held group: namespaces added since are locked, and every lock is still this client's
    // (librbd can lose one; a break by a peer blocklists it). False when the group was given up.
    bool check_locks(uint32_t g) {
        for (const auto& n : namespaces_of(g)) {
            try {
                if (_locked[g].count(n->store.get())) {
                    if (n->store->holds_exclusive_lock()) continue;
                    give_up(g, fmt::format("the lock of {} is no longer this gateway's", n->store->describe()).c_str());
                    return false;
                }
                n->store->acquire_exclusive_lock(true);
                _locked[g].insert(n->store.get());
            } catch (const nvme::fenced_error& e) {
                give_up(g, e.what());
                _fenced.store(true);
                return false;
            } catch (const std::exception& e) {
                spdlog::error("{}: ANA group {}: namespace {}: {}", _who, g, n->nsid, e.what());
            }
        }
        return true;
    }

    void give_up(uint32_t g, const char* why) {
        _tgt.set_managed_ana_state(g, ana_state::inaccessible);
        _held.erase(g);
        _locked.erase(g);
        spdlog::error("{}: ANA group {} made inaccessible: {}", _who, g, why);
    }

    void release_locks(uint32_t g) {
        for (const auto& n : namespaces_of(g)) {
            try {
                n->store->release_exclusive_lock();
            } catch (const std::exception& e) {
                spdlog::warn("{}: ANA group {}: {}", _who, g, e.what());
            }
        }
        _locked.erase(g);
    }

    // Inaccessible here first (hosts stop sending), then the locks go (librbd finishes the
    // writes in flight first), then the group object names the new owner and wakes it.
    void hand_over(uint32_t g, const std::string& to, const char* why) {
        spdlog::info("{}: hands ANA group {} to gateway {} ({})", _who, g, to, why);
        _tgt.set_managed_ana_state(g, ana_state::inaccessible);
        _held.erase(g);
        release_locks(g);
        if (move_owner(g, _cfg.name, to, true)) notify_peers();
    }

    void give_up_all(const char* why) {
        for (uint32_t g : std::vector<uint32_t>(_held.begin(), _held.end())) {
            give_up(g, why);
            _lost.insert(g);
        }
    }

    // At stop: each owned group to a live peer (its home first), else just its locks released
    // (the group object keeps naming this gateway: it takes the group again when it comes back,
    // or a peer does once it sees the beat says "stopped").
    void hand_over_all() {
        const auto now = clock::now();
        std::map<std::string, std::string> kv;
        try {
            kv = read_all();
        } catch (const std::exception& e) {
            spdlog::warn("{}", e.what());
        }
        for (uint32_t g : std::vector<uint32_t>(_held.begin(), _held.end())) {
            std::string to;
            for (const auto& [name, p] : _peers)
                if (p.home == g && eligible(name, now)) to = name;
            if (to.empty())
                for (const auto& [name, p] : _peers)
                    if (eligible(name, now)) {
                        to = name;
                        break;
                    }
            if (!to.empty()) {
                hand_over(g, to, "this gateway stops");
            } else {
                _tgt.set_managed_ana_state(g, ana_state::inaccessible);
                _held.erase(g);
                release_locks(g);
                spdlog::info("{}: ANA group {}: no live gateway to take it; its locks are released", _who, g);
            }
        }
        if (int rc = write_keys({{"hb." + _cfg.name, "stopped"}}); rc < 0)
            spdlog::warn("{}: cannot mark this gateway stopped: {}", _who, std::strerror(-rc));
        else
            notify_peers();
        spdlog::info("{}: stopped", _who);
    }

    gateway_config _cfg;
    target::target& _tgt;
    std::string _who, _oid;
    rados_t _cluster = nullptr;
    rados_ioctx_t _io = nullptr;
    uint64_t _watch = 0;
    std::atomic<bool> _rewatch{false};
    uint64_t _beat = 0;                        // the heartbeat thread's
    std::string _token;                        // this process's, in its heartbeat
    std::string _last_beat;                    // the value it wrote last (compared before the next write)
    std::atomic<clock::rep> _last_beat_ok{0};  // when the last successful beat was issued
    std::atomic<bool> _fenced{false};          // blocklisted: gives its groups up until restarted
    std::atomic<bool> _displaced{false};       // another process beats under this name
    std::thread _beat_thread;
    std::condition_variable _beat_wake;
    std::thread _thread;
    std::mutex _wake_lock;
    std::condition_variable _wake;
    bool _woken = false, _stopping = false;
    // The coordination thread's (and stop()'s after the join).
    std::map<std::string, peer> _peers;
    std::set<std::string> _reported_dead;
    std::set<uint32_t> _synced;     // NSIDs here and in the group's map at the last look
    std::set<uint32_t> _unshared;   // non-rbd namespaces (warned about once)
    std::set<uint32_t> _failed_ns;  // namespaces whose sync failed (logged once)
    std::set<uint32_t> _lost;       // given up by give_up_all, not yet looked at again
    std::set<uint32_t> _held;       // groups this gateway serves optimized
    std::map<uint32_t, std::set<const nvme::block_store*>> _locked;  // their stores whose lock it holds
};

}  // namespace

std::unique_ptr<gateway_group> make_gateway_group(const gateway_config& cfg, target::target& tgt) {
    return std::make_unique<rados_gateway_group>(cfg, tgt);
}

}  // namespace ferry::mgmt
