#include "target/subsystem.hh"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "env/thread.hh"
#include "transport/connection.hh"

namespace ferry::target {

std::array<uint8_t, 16> derive_id(const std::string& text) {
    // Two FNV-1a 64-bit hashes with different offsets; stable across restarts and builds.
    auto fnv = [&](uint64_t h) {
        for (unsigned char c : text) {
            h ^= c;
            h *= 0x100000001b3ull;
        }
        return h;
    };
    uint64_t a = fnv(0xcbf29ce484222325ull), b = fnv(0x84222325cbf29ce4ull);
    std::array<uint8_t, 16> id{};
    for (int i = 0; i < 8; ++i) {
        id[i] = static_cast<uint8_t>(a >> (56 - 8 * i));
        id[8 + i] = static_cast<uint8_t>(b >> (56 - 8 * i));
    }
    id[6] = static_cast<uint8_t>((id[6] & 0x0F) | 0x80);  // UUID version 8 (custom)
    id[8] = static_cast<uint8_t>((id[8] & 0x3F) | 0x80);  // RFC 4122 variant
    return id;
}

controller::controller(subsystem& s, uint16_t id, std::string host, std::array<uint8_t, 16> hid, uint32_t kato,
                       std::shared_ptr<const ana_port> ana_states)
    : subsys(s),
      cntlid(id),
      hostnqn(std::move(host)),
      hostid(hid),
      ana(std::move(ana_states)),
      kato_ms(kato),
      _queues(max_io_queues + 1) {}

std::string host_label(const std::string& hostnqn) {
    return hostnqn.empty() ? "<empty host NQN>" : hostnqn;
}

const char* teardown_name(teardown t) {
    switch (t) {
        case teardown::none:
            return "none";
        case teardown::keep_alive:
            return "keep-alive timeout";
        case teardown::subsystem_removed:
            return "subsystem removed";
        case teardown::host_removed:
            return "host no longer allowed";
        case teardown::dropped:
            return "dropped through the management API";
    }
    return "?";
}

std::string controller::name() const {
    return fmt::format("controller {} of {} (host {})", cntlid, subsys.nqn(), host_label(hostnqn));
}

void controller::drop(teardown why) {
    teardown none = teardown::none;
    _teardown.compare_exchange_strong(none, why);
    dead.store(true);
}

void controller::notify_ns_changed(uint32_t nsid) {
    std::lock_guard g(_notice_lock);
    // Beyond 1024 NSIDs the log page says "more changed" (0xFFFFFFFF): one entry past it suffices.
    if (std::find(_notice_nsids.begin(), _notice_nsids.end(), nsid) == _notice_nsids.end() &&
        _notice_nsids.size() <= 1024)
        _notice_nsids.push_back(nsid);
    _notice_ns = true;
    _has_notices.store(true, std::memory_order_release);
}

void controller::notify_discovery_changed() {
    std::lock_guard g(_notice_lock);
    _notice_discovery = true;
    _has_notices.store(true, std::memory_order_release);
}

void controller::notify_ana_changed() {
    std::lock_guard g(_notice_lock);
    _notice_ana = true;
    _has_notices.store(true, std::memory_order_release);
}

void controller::take_notices(std::vector<uint32_t>& nsids, bool& ns_changed, bool& discovery_changed,
                              bool& ana_changed) {
    std::lock_guard g(_notice_lock);
    nsids.swap(_notice_nsids);
    _notice_nsids.clear();
    ns_changed = _notice_ns;
    discovery_changed = _notice_discovery;
    ana_changed = _notice_ana;
    _notice_ns = _notice_discovery = _notice_ana = false;
    _has_notices.store(false, std::memory_order_relaxed);
}

bool controller::claim_queue(uint16_t qid) {
    std::lock_guard g(_queue_lock);
    if (qid >= _queues.size() || _queues[qid]) return false;
    _queues[qid] = true;
    return true;
}

void controller::release_queue(uint16_t qid) {
    std::lock_guard g(_queue_lock);
    if (qid < _queues.size()) _queues[qid] = false;
}

bool controller::has_io_queues() const {
    std::lock_guard g(_queue_lock);
    for (size_t qid = 1; qid < _queues.size(); ++qid)
        if (_queues[qid]) return true;
    return false;
}

void controller::add_queue_record(const queue_record& q) {
    std::lock_guard g(_queue_lock);
    auto at = std::find_if(_records.begin(), _records.end(), [&](const queue_record& r) { return r.qid > q.qid; });
    _records.insert(at, q);
}

void controller::remove_queue_record(uint16_t qid) {
    std::lock_guard g(_queue_lock);
    std::erase_if(_records, [&](const queue_record& r) { return r.qid == qid; });
}

std::vector<queue_record> controller::queue_records() const {
    std::lock_guard g(_queue_lock);
    return _records;
}

std::shared_ptr<ns> make_namespace(const std::string& subnqn, const namespace_config& nc) {
    auto n = std::make_shared<ns>();
    n->nsid = nc.nsid;
    n->backend = nc.backend;
    try {
        switch (nc.backend) {
            case backend_kind::null:
                n->store = nvme::make_null_store(nc.size_bytes / nc.block_size, nc.block_size);
                transport::zero_bytes();  // its reads' data: mapped now, not by a reactor's first Read
                break;
            case backend_kind::ram:
                n->store = nvme::make_ram_store(nc.size_bytes / nc.block_size, nc.block_size);
                break;
            case backend_kind::file:
                n->store = nvme::make_file_store(nc.path, nc.block_size, nc.size_bytes);
                break;
            case backend_kind::pcie:
                n->store = nvme::make_pcie_store(nc.pcie_address, nc.pcie_nsid);
                break;
            case backend_kind::rbd: {
                nvme::rbd_options o;
                o.pool = nc.rbd.pool;
                o.image = nc.rbd.image;
                o.ceph_conf = nc.rbd.ceph_conf;
                if (!nc.rbd.client.empty()) o.client = nc.rbd.client;
                o.block_size = nc.block_size;
                n->store = nvme::make_rbd_store(o);
                break;
            }
        }
        // Geometry as the store has it (the configured size, a file's, a device's LBA format),
        // kept here for the I/O path's range checks.
        n->blocks.store(n->store->block_count());
        n->block_size = n->store->block_size();
        if (n->block_size < 512 || n->block_size > 4096 || (n->block_size & (n->block_size - 1)))
            throw std::runtime_error(fmt::format("block size {} is not supported (512 to 4096)", n->block_size));
        while ((1u << n->lbads) < n->block_size) ++n->lbads;
    } catch (const std::exception& e) {
        throw std::runtime_error(fmt::format("subsystem {} namespace {}: {}", subnqn, nc.nsid, e.what()));
    }
    n->uuid = nc.uuid ? *nc.uuid : derive_id(subnqn + "/ns/" + std::to_string(nc.nsid));
    n->nguid = nc.nguid ? *nc.nguid : derive_id(subnqn + "/nguid/" + std::to_string(nc.nsid));
    if (nc.eui64) n->eui64 = *nc.eui64;
    n->ana_group.store(nc.ana_group);
    n->config = nc;
    n->config.uuid = n->uuid;
    n->config.nguid = n->nguid;
    return n;
}

subsystem::subsystem(const subsystem_config& cfg, bool discovery)
    : _nqn(cfg.nqn),
      _discovery(discovery),
      _started_ns(env::now_ns()),
      _model(cfg.model),
      _allow_any(cfg.allow_any_host),
      _hosts(cfg.hosts) {
    for (const auto& [host, k] : cfg.keys)
        if (!k.empty()) _keys[host] = k;
    if (cfg.serial.empty()) {
        auto id = derive_id(cfg.nqn);
        _serial = fmt::format("{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}", id[0], id[1], id[2],
                              id[3], id[4], id[5], id[8], id[9], id[10], id[11]);
    } else {
        _serial = cfg.serial;
    }
    auto table = std::make_shared<ns_table>();
    for (const auto& nc : cfg.namespaces) {
        auto n = make_namespace(cfg.nqn, nc);
        narrow_features(*n->store);
        (*table)[n->nsid] = std::move(n);
    }
    _namespaces = std::move(table);
}

std::string subsystem::serial() const {
    std::lock_guard g(_lock);
    return _serial;
}

std::string subsystem::model() const {
    std::lock_guard g(_lock);
    return _model;
}

bool subsystem::host_allowed(const std::string& hostnqn) const {
    if (_discovery) return true;
    std::lock_guard g(_lock);
    if (_allow_any) return true;
    return std::find(_hosts.begin(), _hosts.end(), hostnqn) != _hosts.end();
}

bool subsystem::allows_any_host() const {
    std::lock_guard g(_lock);
    return _allow_any;
}

std::vector<std::string> subsystem::hosts() const {
    std::lock_guard g(_lock);
    return _hosts;
}

ns_snapshot subsystem::namespaces() const {
    std::lock_guard g(_ns_lock);
    return ns_snapshot(_namespaces);
}

std::shared_ptr<ns> subsystem::find_ns(uint32_t nsid) const {
    std::lock_guard g(_ns_lock);
    auto it = _namespaces->find(nsid);
    return it == _namespaces->end() ? nullptr : it->second;
}

std::string subsystem::admit_store(const ns& n, bool live) const {
    // Identify ONCS is read by hosts once, at controller initialization: a namespace added
    // later cannot lower it for hosts already connected. (A store's smaller transfer limit does
    // not matter: the target splits commands for it.)
    const uint16_t missing = optional_commands() & ~n.store->optional_commands();
    if (live && missing)
        return fmt::format("its store lacks optional commands (ONCS {:#x}) that hosts of {} were told about", missing,
                           _nqn);
    if (live && n.store->volatile_write_cache() && !volatile_write_cache())
        return fmt::format("its store has a volatile write cache, and hosts of {} were told there is none", _nqn);
    return {};
}

void subsystem::narrow_features(const nvme::block_store& store) {
    _oncs.store(_oncs.load() & store.optional_commands());
    if (store.volatile_write_cache())
        _vwc.store(1);
    else if (_vwc.load() < 0)
        _vwc.store(0);
}

std::string subsystem::add_namespace(std::shared_ptr<ns> n) {
    {
        // Under the lock create_controller() marks the subsystem as having had a controller:
        // none is made between the check and the narrowing (its host would read the old ONCS).
        std::lock_guard g(_lock);
        if (auto why = admit_store(*n, _ever_had_controller); !why.empty()) return why;
        if (!_ever_had_controller) narrow_features(*n->store);
    }
    {
        std::lock_guard g(_ns_lock);
        auto table = std::make_shared<ns_table>(*_namespaces);
        (*table)[n->nsid] = std::move(n);
        _namespaces = std::move(table);
    }
    _ns_generation.fetch_add(1, std::memory_order_release);
    return {};
}

std::shared_ptr<ns> subsystem::remove_namespace(uint32_t nsid) {
    std::shared_ptr<ns> gone;
    {
        std::lock_guard g(_ns_lock);
        auto it = _namespaces->find(nsid);
        if (it == _namespaces->end()) return nullptr;
        gone = it->second;
        auto table = std::make_shared<ns_table>(*_namespaces);
        table->erase(nsid);
        _namespaces = std::move(table);
    }
    _ns_generation.fetch_add(1, std::memory_order_release);
    return gone;
}

void subsystem::namespace_resized() {
    _ns_generation.fetch_add(1, std::memory_order_release);
}

uint32_t subsystem::lowest_free_nsid() const {
    std::lock_guard g(_ns_lock);
    for (uint32_t id = 1; id <= max_nsid; ++id)
        if (!_namespaces->count(id)) return id;
    return 0;
}

std::string subsystem::set_identity(const std::optional<std::string>& model, const std::optional<std::string>& serial) {
    std::lock_guard g(_lock);
    const bool changes = (model && *model != _model) || (serial && *serial != _serial);
    if (changes && _ever_had_controller)
        return "model and serial cannot change once a host has connected (hosts identify the subsystem by them)";
    if (model) _model = *model;
    if (serial) _serial = *serial;
    return {};
}

void subsystem::set_allow_any_host(bool any) {
    std::lock_guard g(_lock);
    _allow_any = any;
}

bool subsystem::add_host(const std::string& hostnqn) {
    std::lock_guard g(_lock);
    if (std::find(_hosts.begin(), _hosts.end(), hostnqn) != _hosts.end()) return false;
    _hosts.push_back(hostnqn);
    return true;
}

bool subsystem::remove_host(const std::string& hostnqn) {
    std::lock_guard g(_lock);
    auto it = std::find(_hosts.begin(), _hosts.end(), hostnqn);
    if (it == _hosts.end()) return false;
    _hosts.erase(it);
    _keys.erase(hostnqn);
    return true;
}

host_keys subsystem::keys_of(const std::string& hostnqn) const {
    std::lock_guard g(_lock);
    auto it = _keys.find(hostnqn);
    return it == _keys.end() ? host_keys{} : it->second;
}

void subsystem::set_keys(const std::string& hostnqn, const host_keys& keys) {
    std::lock_guard g(_lock);
    if (keys.empty())
        _keys.erase(hostnqn);
    else
        _keys[hostnqn] = keys;
}

subsystem_config subsystem::config() const {
    subsystem_config c;
    c.nqn = _nqn;
    {
        std::lock_guard g(_lock);
        c.serial = _serial;
        c.model = _model;
        c.allow_any_host = _allow_any;
        c.hosts = _hosts;
        c.keys = _keys;
    }
    for (const auto& [nsid, n] : namespaces()) {
        namespace_config nc = n.config;
        nc.ana_group = n.ana_group.load();
        // Grown namespaces keep their size; devices report theirs (0 = as the device says).
        if (n.backend != backend_kind::pcie && n.backend != backend_kind::rbd)
            nc.size_bytes = n.block_count() * n.block_size;
        c.namespaces.push_back(nc);
    }
    return c;
}

std::shared_ptr<controller> subsystem::create_controller(const std::string& hostnqn,
                                                         const std::array<uint8_t, 16>& hostid, uint32_t kato_ms,
                                                         std::shared_ptr<const ana_port> ana) {
    std::lock_guard g(_lock);
    // Checked again under the lock the control path changes them under: a subsystem removed,
    // or a host disallowed, after the Connect looked gets no controller it would not drop.
    if (_removed) return nullptr;
    if (!_discovery && !_allow_any && std::find(_hosts.begin(), _hosts.end(), hostnqn) == _hosts.end()) return nullptr;
    // Dynamic controller model: CNTLIDs in the range (1..0xFFEF), never two live ones alike.
    const unsigned span = unsigned(_cntlid_max) - _cntlid_min + 1;
    for (unsigned tries = 0; tries < span; ++tries) {
        uint16_t id = _next_cntlid;
        _next_cntlid = _next_cntlid >= _cntlid_max ? _cntlid_min : _next_cntlid + 1;
        if (_controllers.count(id)) continue;
        auto c = std::make_shared<controller>(*this, id, hostnqn, hostid, kato_ms, ana);
        _controllers.emplace(id, c);
        _ever_had_controller = true;
        return c;
    }
    return nullptr;
}

void subsystem::set_cntlid_range(uint16_t min, uint16_t max) {
    std::lock_guard g(_lock);
    _cntlid_min = min;
    _cntlid_max = max;
    if (_next_cntlid < min || _next_cntlid > max) _next_cntlid = min;
}

std::shared_ptr<controller> subsystem::find_controller(uint16_t cntlid) {
    std::lock_guard g(_lock);
    auto it = _controllers.find(cntlid);
    return it == _controllers.end() ? nullptr : it->second;
}

void subsystem::remove_controller(uint16_t cntlid) {
    std::lock_guard g(_lock);
    _controllers.erase(cntlid);
}

size_t subsystem::controller_count() {
    std::lock_guard g(_lock);
    return _controllers.size();
}

std::vector<std::shared_ptr<controller>> subsystem::controllers() const {
    std::lock_guard g(_lock);
    std::vector<std::shared_ptr<controller>> v;
    for (const auto& [id, c] : _controllers) v.push_back(c);
    return v;
}

void subsystem::mark_removed() {
    std::lock_guard g(_lock);
    _removed = true;
}

bool subsystem::ever_had_controller() const {
    std::lock_guard g(_lock);
    return _ever_had_controller;
}

}  // namespace ferry::target
