// Live changes of the target (control path: the management API's thread). Changes are
// serialized by _control_lock; the lists Connect and discovery read are swapped under _lock;
// the I/O path sees namespace changes through each subsystem's generation (target/README.md).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>

#include "target/dhchap.hh"
#include "target/target.hh"
#include "transport/tls.hh"

namespace ferry::target {
namespace {
[[noreturn]] void refuse(change_errc code, const std::string& what);

// Every key set parses (the error names the field, never the key).
void check_host_keys(const host_keys& k, const std::string& hostnqn) {
    auto check = [&](const std::string& text, const char* field, auto parse) {
        if (text.empty()) return;
        try {
            parse(text);
        } catch (const std::invalid_argument& e) {
            refuse(change_errc::invalid, fmt::format("host {}: {}: {}", hostnqn, field, e.what()));
        }
    };
    check(k.dhchap_key, "dhchap_key", [](const std::string& t) { parse_dhchap_secret(t); });
    check(k.dhchap_ctrl_key, "dhchap_ctrl_key", [](const std::string& t) { parse_dhchap_secret(t); });
    check(k.tls_psk, "tls_psk", [](const std::string& t) { transport::parse_psk_interchange(t); });
    if (!k.dhchap_ctrl_key.empty() && k.dhchap_key.empty())
        refuse(change_errc::invalid,
               fmt::format("host {}: dhchap_ctrl_key needs dhchap_key (the host authenticates first)", hostnqn));
}

[[noreturn]] void refuse(change_errc code, const std::string& what) {
    throw change_error(code, what);
}

// `where` prefixes the message ("listener a:p: " or "").
void check_ana_group(uint32_t group, const std::string& where = {}) {
    if (!valid_ana_group(group))
        refuse(change_errc::invalid, fmt::format("{}ANA group {} is not in 1..{}", where, group, max_ana_groups));
}

// `where` prefixes the message ("listener a:p: ").
void check_ana_state(ana_state state, uint32_t group, const std::string& where) {
    if (!ana_state_settable(state))
        refuse(change_errc::invalid, fmt::format("{}ANA group {}: {}", where, group, ana_change_refusal));
}

bool printable_ascii(const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
}

std::string hex(const uint8_t* p, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += fmt::format("{:02x}", p[i]);
    return s;
}

// Identifiers of a namespace that a host uses to tell namespaces apart: two alike in one
// subsystem would make Linux treat them as one (multipath).
std::string identifier_clash(const ns_snapshot& existing, const ns& n) {
    for (const auto& [nsid, other] : existing) {
        if (other.uuid == n.uuid) return fmt::format("UUID {} is namespace {}'s already", hex(n.uuid.data(), 16), nsid);
        if (other.nguid == n.nguid)
            return fmt::format("NGUID {} is namespace {}'s already", hex(n.nguid.data(), 16), nsid);
        if (n.has_eui64() && other.eui64 == n.eui64)
            return fmt::format("EUI64 {} is namespace {}'s already", hex(n.eui64.data(), 8), nsid);
    }
    return {};
}

// Ends the associations of `s` (only those of `only_host` if given).
void drop_controllers(subsystem& s, teardown why, const std::optional<std::string>& only_host = std::nullopt) {
    for (const auto& c : s.controllers()) {
        if (only_host && c->hostnqn != *only_host) continue;
        spdlog::info("{}: closing all its connections: {}", c->name(), teardown_name(why));
        c->drop(why);
    }
}
}  // namespace

void target::notify_discovery_change() {
    for (const auto& c : _discovery->controllers()) c->notify_discovery_changed();
}

void target::add_subsystem(const subsystem_config& cfg) {
    std::lock_guard control(_control_lock);
    if (cfg.nqn == nvme::discovery_nqn) refuse(change_errc::conflict, "the discovery subsystem exists always");
    if (find_subsystem(cfg.nqn)) refuse(change_errc::conflict, "subsystem " + cfg.nqn + " exists already");
    subsystem_config c = cfg;
    for (const auto& [host, k] : c.keys) check_host_keys(k, host);
    std::vector<bool> used(max_nsid + 1);
    for (const auto& n : c.namespaces) {
        if (n.nsid > max_nsid) refuse(change_errc::invalid, fmt::format("NSID {} is above {}", n.nsid, max_nsid));
        if (n.nsid && used[n.nsid]) refuse(change_errc::conflict, fmt::format("NSID {} is given twice", n.nsid));
        if (n.nsid) used[n.nsid] = true;
    }
    for (auto& n : c.namespaces) {
        if (n.nsid) continue;
        uint32_t id = 1;
        while (id <= max_nsid && used[id]) ++id;
        if (id > max_nsid) refuse(change_errc::invalid, "more namespaces than NSIDs");
        n.nsid = id;
        used[id] = true;
    }
    std::shared_ptr<subsystem> s;
    try {
        s = std::make_shared<subsystem>(c, false);
        s->set_cntlid_range(_cntlid_min, _cntlid_max);
    } catch (const std::exception& e) {
        refuse(change_errc::failed, e.what());
    }
    const auto snap = s->namespaces();
    for (auto it = snap.table().begin(); it != snap.table().end(); ++it) {
        ns_table before(snap.table().begin(), it);
        auto clash = identifier_clash(ns_snapshot(std::make_shared<const ns_table>(std::move(before))), *it->second);
        if (!clash.empty()) refuse(change_errc::conflict, fmt::format("namespace {}: {}", it->first, clash));
    }
    {
        std::lock_guard g(_lock);
        _subsystems.push_back(s);
        _genctr.fetch_add(1);  // with the change, under the lock the discovery log is read under
    }
    spdlog::info("subsystem {} added ({} namespace(s))", c.nqn, snap.size());
    notify_discovery_change();
}

void target::remove_subsystem(const std::string& nqn) {
    std::lock_guard control(_control_lock);
    std::shared_ptr<subsystem> s;
    {
        std::lock_guard g(_lock);
        auto it = std::find_if(_subsystems.begin(), _subsystems.end(), [&](const auto& p) { return p->nqn() == nqn; });
        if (it == _subsystems.end()) refuse(change_errc::not_found, "no subsystem " + nqn);
        s = *it;
        _subsystems.erase(it);
        _genctr.fetch_add(1);
    }
    // New Connects no longer find it; the live associations end now (their queues close on
    // their reactors' next timer tick) and the hosts start reconnecting. The subsystem and
    // its stores live on until the last of its queues is gone.
    s->mark_removed();
    drop_controllers(*s, teardown::subsystem_removed);
    // The namespaces the queues still hold go to the reaper: the last reference, which closes
    // the store, is then never dropped on a reactor.
    for (const auto& [nsid, n] : s->namespaces().table()) _reaper.hold(n);
    s.reset();
    _reaper.sweep();  // those no queue holds: closed now, as before this returns
    spdlog::info("subsystem {} removed", nqn);
    notify_discovery_change();
}

void target::update_subsystem(const std::string& nqn, const subsystem_patch& patch) {
    std::lock_guard control(_control_lock);
    auto s = find_subsystem(nqn);
    if (!s || s->is_discovery()) refuse(change_errc::not_found, "no subsystem " + nqn);
    if (patch.model && (patch.model->empty() || patch.model->size() > 40 || !printable_ascii(*patch.model)))
        refuse(change_errc::invalid, "model: 1 to 40 printable ASCII characters");
    if (patch.serial && (patch.serial->empty() || patch.serial->size() > 20 || !printable_ascii(*patch.serial)))
        refuse(change_errc::invalid, "serial: 1 to 20 printable ASCII characters");
    if (auto why = s->set_identity(patch.model, patch.serial); !why.empty())
        refuse(change_errc::conflict, nqn + ": " + why);
    if (patch.allow_any_host && *patch.allow_any_host != s->allows_any_host()) {
        {
            std::lock_guard g(_lock);
            s->set_allow_any_host(*patch.allow_any_host);
            _genctr.fetch_add(1);
        }
        if (!*patch.allow_any_host) {
            // Hosts not on the list lose their associations, as if removed.
            for (const auto& c : s->controllers()) {
                if (s->host_allowed(c->hostnqn)) continue;
                spdlog::info("{}: closing all its connections: {}", c->name(), teardown_name(teardown::host_removed));
                c->drop(teardown::host_removed);
            }
        }
        spdlog::info("subsystem {}: {}", nqn, *patch.allow_any_host ? "any host allowed" : "allowed hosts only");
        notify_discovery_change();
    }
}

uint32_t target::add_namespace(const std::string& nqn, namespace_config cfg) {
    std::lock_guard control(_control_lock);
    auto s = find_subsystem(nqn);
    if (!s || s->is_discovery()) refuse(change_errc::not_found, "no subsystem " + nqn);
    if (cfg.nsid > max_nsid) refuse(change_errc::invalid, fmt::format("NSID {} is above {}", cfg.nsid, max_nsid));
    check_ana_group(cfg.ana_group);
    if (cfg.nsid == 0) {
        cfg.nsid = s->lowest_free_nsid();
        if (!cfg.nsid)
            refuse(change_errc::conflict, fmt::format("{} has {} namespaces: no NSID is free", nqn, max_nsid));
    } else if (s->find_ns(cfg.nsid)) {
        refuse(change_errc::conflict, fmt::format("{} has a namespace {} already", nqn, cfg.nsid));
    }
    std::shared_ptr<ns> n;
    try {
        n = make_namespace(nqn, cfg);
    } catch (const std::exception& e) {
        refuse(change_errc::failed, e.what());
    }
    if (auto clash = identifier_clash(s->namespaces(), *n); !clash.empty())
        refuse(change_errc::conflict, fmt::format("{} namespace {}: {}", nqn, cfg.nsid, clash));
    if (auto why = s->add_namespace(n); !why.empty())
        refuse(change_errc::invalid, fmt::format("{} namespace {}: {}", nqn, cfg.nsid, why));
    spdlog::info("subsystem {}: namespace {} added: {} bytes {} ({} x {} B)", nqn, cfg.nsid,
                 n->block_count() * n->block_size, n->store->describe(), n->block_count(), n->block_size);
    for (const auto& c : s->controllers()) c->notify_ns_changed(cfg.nsid);
    notify_ana_membership(*s);  // Linux looks the new namespace's group up in the ANA log
    return cfg.nsid;
}

void target::remove_namespace(const std::string& nqn, uint32_t nsid) {
    std::lock_guard control(_control_lock);
    auto s = find_subsystem(nqn);
    if (!s || s->is_discovery()) refuse(change_errc::not_found, "no subsystem " + nqn);
    auto n = s->remove_namespace(nsid);
    if (!n) refuse(change_errc::not_found, fmt::format("{} has no namespace {}", nqn, nsid));
    // New commands now fail with Invalid Namespace (the generation moved); every I/O queue
    // lets go of the namespace once its own commands for it completed (at the latest on its
    // next timer tick). Then this is the last reference: dropping it closes the store.
    for (const auto& c : s->controllers()) c->notify_ns_changed(nsid);
    notify_ana_membership(*s);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(_release_timeout_ms.load());
    while (n.use_count() > 1 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const long holders = n.use_count() - 1;
    if (holders > 0) {
        // Never close a store commands may still use; never on a reactor: the reaper closes
        // it once the queues let go.
        _reaper.hold(n);
        spdlog::error(
            "subsystem {}: namespace {} removed, but {} queue(s) still hold it after {} ms; its store is "
            "closed when they let go",
            nqn, nsid, holders, _release_timeout_ms.load());
        refuse(change_errc::failed,
               fmt::format("{} namespace {} is removed (new commands fail), but {} queue(s) still had commands on it "
                           "after {} ms: its store will be closed when they complete",
                           nqn, nsid, holders, _release_timeout_ms.load()));
    }
    const std::string what = n->store->describe();
    n.reset();
    spdlog::info("subsystem {}: namespace {} removed, store {} closed", nqn, nsid, what);
}

void target::resize_namespace(const std::string& nqn, uint32_t nsid, uint64_t size_bytes) {
    std::lock_guard control(_control_lock);
    auto s = find_subsystem(nqn);
    if (!s || s->is_discovery()) refuse(change_errc::not_found, "no subsystem " + nqn);
    auto n = s->find_ns(nsid);
    if (!n) refuse(change_errc::not_found, fmt::format("{} has no namespace {}", nqn, nsid));
    if (n->backend != backend_kind::ram && n->backend != backend_kind::file)
        refuse(change_errc::invalid, fmt::format("{} namespace {}: only ram and file namespaces can grow", nqn, nsid));
    const uint64_t blocks = size_bytes / n->block_size;
    const uint64_t have = n->block_count();
    if (size_bytes % n->block_size)
        refuse(change_errc::invalid, fmt::format("{} namespace {}: {} bytes is not a multiple of the block size {}",
                                                 nqn, nsid, size_bytes, n->block_size));
    if (blocks < have)
        refuse(change_errc::invalid, fmt::format("{} namespace {}: shrinking ({} to {} bytes) is not supported", nqn,
                                                 nsid, have * n->block_size, size_bytes));
    if (blocks == have) return;
    try {
        n->store->grow(blocks);
    } catch (const std::exception& e) {
        refuse(change_errc::failed, fmt::format("{} namespace {}: {}", nqn, nsid, e.what()));
    }
    n->blocks.store(blocks, std::memory_order_release);
    s->namespace_resized();
    spdlog::info("subsystem {}: namespace {} grown from {} to {} bytes", nqn, nsid, have * n->block_size, size_bytes);
    for (const auto& c : s->controllers()) c->notify_ns_changed(nsid);
}

void target::add_host(const std::string& nqn, const std::string& hostnqn, const host_keys& keys) {
    std::lock_guard control(_control_lock);
    auto s = find_subsystem(nqn);
    if (!s || s->is_discovery()) refuse(change_errc::not_found, "no subsystem " + nqn);
    check_host_keys(keys, hostnqn);
    {
        std::lock_guard g(_lock);
        if (!s->add_host(hostnqn))
            refuse(change_errc::conflict, fmt::format("{} allows host {} already", nqn, hostnqn));
        s->set_keys(hostnqn, keys);
        _genctr.fetch_add(1);
    }
    spdlog::info("subsystem {}: host {} allowed", nqn, hostnqn);
    notify_discovery_change();
}

void target::set_host_keys(const std::string& nqn, const std::string& hostnqn, const host_keys& keys) {
    std::lock_guard control(_control_lock);
    auto s = find_subsystem(nqn);
    if (!s || s->is_discovery()) refuse(change_errc::not_found, "no subsystem " + nqn);
    check_host_keys(keys, hostnqn);
    std::vector<std::string> listed = s->hosts();
    if (std::find(listed.begin(), listed.end(), hostnqn) == listed.end())
        refuse(change_errc::not_found, fmt::format("{} has no host {}", nqn, hostnqn));
    bool log_changed;
    {
        std::lock_guard g(_lock);
        // The discovery log lists a host with a TLS PSK only paths with TLS (discovery_log).
        log_changed = s->keys_of(hostnqn).tls_psk.empty() != keys.tls_psk.empty();
        s->set_keys(hostnqn, keys);
        if (log_changed) _genctr.fetch_add(1);
    }
    // Which keys, never their values.
    spdlog::info("subsystem {}: host {} keys set (dhchap {}, dhchap controller {}, TLS PSK {})", nqn, hostnqn,
                 keys.dhchap_key.empty() ? "none" : "set", keys.dhchap_ctrl_key.empty() ? "none" : "set",
                 keys.tls_psk.empty() ? "none" : "set");
    if (log_changed) notify_discovery_change();
}

void target::remove_host(const std::string& nqn, const std::string& hostnqn) {
    std::lock_guard control(_control_lock);
    auto s = find_subsystem(nqn);
    if (!s || s->is_discovery()) refuse(change_errc::not_found, "no subsystem " + nqn);
    {
        std::lock_guard g(_lock);
        if (!s->remove_host(hostnqn)) refuse(change_errc::not_found, fmt::format("{} has no host {}", nqn, hostnqn));
        _genctr.fetch_add(1);
    }
    spdlog::info("subsystem {}: host {} no longer allowed", nqn, hostnqn);
    if (!s->host_allowed(hostnqn)) drop_controllers(*s, teardown::host_removed, hostnqn);
    notify_discovery_change();
}

void target::drop_controller(const std::string& nqn, uint16_t cntlid) {
    std::lock_guard control(_control_lock);
    auto s = find_subsystem(nqn);
    if (!s) refuse(change_errc::not_found, "no subsystem " + nqn);
    auto c = s->find_controller(cntlid);
    if (!c) refuse(change_errc::not_found, fmt::format("{} has no controller {}", nqn, cntlid));
    spdlog::info("{}: closing all its connections: {}", c->name(), teardown_name(teardown::dropped));
    c->drop(teardown::dropped);
}

void target::add_listener(const listener_config& l) {
    std::lock_guard control(_control_lock);
    {
        std::lock_guard g(_lock);
        for (const auto& e : _listeners)
            if (e.cfg.address == l.address && e.cfg.port == l.port)
                refuse(change_errc::conflict, fmt::format("listener {}:{} exists already", l.address, l.port));
        for (const auto& [group, state] : l.ana) {
            check_ana_group(group, fmt::format("listener {}:{}: ", l.address, l.port));
            check_ana_state(state, group, fmt::format("listener {}:{}: ", l.address, l.port));
        }
        _listeners.push_back(make_listener_entry(l));
        _genctr.fetch_add(1);
    }
    notify_discovery_change();
}

void target::remove_listener(const std::string& address, uint16_t port) {
    std::lock_guard control(_control_lock);
    {
        std::lock_guard g(_lock);
        auto it = std::find_if(_listeners.begin(), _listeners.end(),
                               [&](const auto& e) { return e.cfg.address == address && e.cfg.port == port; });
        if (it == _listeners.end()) refuse(change_errc::not_found, fmt::format("no listener {}:{}", address, port));
        _listeners.erase(it);
        _genctr.fetch_add(1);
    }
    notify_discovery_change();
}

void target::set_ana_state(const std::string& address, uint16_t port, uint32_t group, ana_state state) {
    std::lock_guard control(_control_lock);
    check_ana_group(group);
    if (std::find(_managed_ana_groups.begin(), _managed_ana_groups.end(), group) != _managed_ana_groups.end())
        refuse(change_errc::conflict,
               fmt::format("listener {}:{}: ANA group {} is run by {}: its state follows who holds its images' "
                           "locks and cannot be set by hand",
                           address, port, group, _ana_manager));
    check_ana_state(state, group, fmt::format("listener {}:{}: ", address, port));
    std::shared_ptr<ana_port> changed;
    ana_state was = ana_state::optimized;
    {
        std::lock_guard g(_lock);
        auto it = std::find_if(_listeners.begin(), _listeners.end(),
                               [&](const auto& e) { return e.cfg.address == address && e.cfg.port == port; });
        if (it == _listeners.end()) refuse(change_errc::not_found, fmt::format("no listener {}:{}", address, port));
        was = it->ana->state(group);
        if (state == ana_state::optimized)
            it->cfg.ana.erase(group);
        else
            it->cfg.ana[group] = state;
        it->ana->set(group, state);
        changed = it->ana;
    }
    if (was == state) return;
    // The states first, then the count the I/O queues compare with (release).
    const uint64_t count = _ana_change_count.fetch_add(1, std::memory_order_acq_rel) + 1;
    unsigned notified = 0;
    for (const auto& s : subsystems())
        for (const auto& c : s->controllers())
            if (c->ana == changed) {
                c->notify_ana_changed();
                ++notified;
            }
    spdlog::info("listener {}:{}: ANA group {} {} -> {} (change count {}, {} controller(s) notified)", address, port,
                 group, ana_state_name(was), ana_state_name(state), count, notified);
}

void target::set_ana_manager(std::vector<uint32_t> groups, std::string manager) {
    std::lock_guard control(_control_lock);
    std::lock_guard g(_lock);  // make_listener_entry reads the groups under it
    _managed_ana_groups = std::move(groups);
    _ana_manager = std::move(manager);
}

void target::set_managed_ana_state(uint32_t group, ana_state state, bool log) {
    std::lock_guard control(_control_lock);
    check_ana_group(group);
    std::vector<std::shared_ptr<ana_port>> changed;
    {
        std::lock_guard g(_lock);
        for (auto& l : _listeners)
            if (l.ana->state(group) != state) {
                l.ana->set(group, state);
                changed.push_back(l.ana);
            }
        if (_unlisted_ana->state(group) != state) {
            _unlisted_ana->set(group, state);
            changed.push_back(_unlisted_ana);
        }
    }
    if (changed.empty()) return;
    const uint64_t count = _ana_change_count.fetch_add(1, std::memory_order_acq_rel) + 1;
    unsigned notified = 0;
    for (const auto& s : subsystems())
        for (const auto& c : s->controllers())
            if (std::find(changed.begin(), changed.end(), c->ana) != changed.end()) {
                c->notify_ana_changed();
                ++notified;
            }
    if (log)
        spdlog::info("{}: ANA group {} -> {} on {} listener(s) (change count {}, {} controller(s) notified)",
                 _ana_manager, group, ana_state_name(state), changed.size(), count, notified);
}

ana_state target::managed_ana_state(uint32_t group) const {
    std::lock_guard g(_lock);
    return _unlisted_ana->state(group);
}

target::managed_ana_view target::managed_ana() const {
    managed_ana_view v;
    std::vector<uint32_t> used;
    for (const auto& s : subsystems())
        for (const auto& [nsid, n] : s->namespaces()) used.push_back(n.ana_group.load(std::memory_order_relaxed));
    std::lock_guard g(_lock);
    if (_ana_manager.empty()) return v;
    v.manager = _ana_manager;
    for (uint32_t group : used)
        if (std::find(_managed_ana_groups.begin(), _managed_ana_groups.end(), group) != _managed_ana_groups.end())
            v.groups[group] = _unlisted_ana->state(group);
    return v;
}

void target::set_cntlid_range(uint16_t min, uint16_t max) {
    std::lock_guard control(_control_lock);
    if (min < 1 || max > 0xFFEF || min > max)
        refuse(change_errc::invalid, fmt::format("CNTLID range {}..{} is not within 1..65519", min, max));
    _cntlid_min = min;
    _cntlid_max = max;
    for (const auto& s : subsystems()) s->set_cntlid_range(min, max);
}

void target::set_namespace_ana_group(const std::string& nqn, uint32_t nsid, uint32_t group) {
    std::lock_guard control(_control_lock);
    auto s = find_subsystem(nqn);
    if (!s || s->is_discovery()) refuse(change_errc::not_found, "no subsystem " + nqn);
    auto n = s->find_ns(nsid);
    if (!n) refuse(change_errc::not_found, fmt::format("{} has no namespace {}", nqn, nsid));
    check_ana_group(group);
    // A gateway group's namespaces are in the group's namespace map with their ANA group, and a
    // move would report the namespace optimized where its image's lock is not held.
    if (!_ana_manager.empty())
        refuse(change_errc::conflict,
               fmt::format("{} namespace {}: ANA groups are run by {}: remove the namespace and add it in the "
                           "other group",
                           nqn, nsid, _ana_manager));
    const uint32_t was = n->ana_group.exchange(group);
    if (was == group) return;
    spdlog::info("subsystem {}: namespace {} moved from ANA group {} to {}", nqn, nsid, was, group);
    notify_ana_membership(*s);
}

void target::notify_ana_membership(subsystem& s) {
    _ana_change_count.fetch_add(1, std::memory_order_acq_rel);
    for (const auto& c : s.controllers()) c->notify_ana_changed();
}

void target::add_referral(const referral_config& r) {
    std::lock_guard control(_control_lock);
    {
        std::lock_guard g(_lock);
        for (const auto& e : _referrals)
            if (e.address == r.address && e.port == r.port)
                refuse(change_errc::conflict, fmt::format("referral {}:{} exists already", r.address, r.port));
        _referrals.push_back(r);
        _genctr.fetch_add(1);
    }
    notify_discovery_change();
}

void target::remove_referral(const std::string& address, uint16_t port) {
    std::lock_guard control(_control_lock);
    {
        std::lock_guard g(_lock);
        auto it = std::find_if(_referrals.begin(), _referrals.end(),
                               [&](const auto& e) { return e.address == address && e.port == port; });
        if (it == _referrals.end()) refuse(change_errc::not_found, fmt::format("no referral {}:{}", address, port));
        _referrals.erase(it);
        _genctr.fetch_add(1);
    }
    notify_discovery_change();
}

target_config target::current_config() const {
    target_config c;
    std::vector<std::shared_ptr<subsystem>> subs;
    {
        std::lock_guard g(_lock);
        for (const auto& l : _listeners) c.listeners.push_back(l.cfg);
        c.referrals = _referrals;
        subs = _subsystems;
    }
    for (const auto& s : subs) c.subsystems.push_back(s->config());
    return c;
}

std::vector<controller_view> target::controllers(const std::string& nqn) const {
    auto s = find_subsystem(nqn);
    if (!s) refuse(change_errc::not_found, "no subsystem " + nqn);
    std::vector<controller_view> views;
    for (const auto& c : s->controllers()) {
        controller_view v;
        v.cntlid = c->cntlid;
        v.hostnqn = c->hostnqn;
        v.hostid = c->hostid;
        v.kato_ms = c->kato_ms.load();
        for (const auto& q : c->queue_records()) {
            if (q.qid == 0) v.peer = q.peer;
            v.queues.push_back({q.qid, q.depth, q.reactor, q.connection});
        }
        views.push_back(std::move(v));
    }
    return views;
}

}  // namespace ferry::target
