#include "target/subsystem.hh"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "env/thread.hh"

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

controller::controller(subsystem& s, uint16_t id, std::string host, std::array<uint8_t, 16> hid, uint32_t kato)
    : subsys(s), cntlid(id), hostnqn(std::move(host)), hostid(hid), kato_ms(kato), _queues(max_io_queues + 1) {}

std::string host_label(const std::string& hostnqn) {
    return hostnqn.empty() ? "<empty host NQN>" : hostnqn;
}

std::string controller::name() const {
    return fmt::format("controller {} of {} (host {})", cntlid, subsys.nqn(), host_label(hostnqn));
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

subsystem::subsystem(const subsystem_config& cfg, bool discovery)
    : _nqn(cfg.nqn),
      _model(cfg.model),
      _discovery(discovery),
      _allow_any(cfg.allow_any_host),
      _hosts(cfg.hosts),
      _started_ns(env::now_ns()) {
    if (cfg.serial.empty()) {
        auto id = derive_id(cfg.nqn);
        _serial = fmt::format("{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}", id[0], id[1], id[2], id[3],
                              id[4], id[5], id[8], id[9], id[10], id[11]);
    } else {
        _serial = cfg.serial;
    }
    for (const auto& nc : cfg.namespaces) {
        ns n;
        n.nsid = nc.nsid;
        try {
            switch (nc.backend) {
            case backend_kind::null:
                n.store = nvme::make_null_store(nc.size_bytes / nc.block_size, nc.block_size);
                break;
            case backend_kind::ram:
                n.store = nvme::make_ram_store(nc.size_bytes / nc.block_size, nc.block_size);
                break;
            case backend_kind::file:
                n.store = nvme::make_file_store(nc.path, nc.block_size, nc.size_bytes);
                break;
            case backend_kind::pcie:
                n.store = nvme::make_pcie_store(nc.pcie_address, nc.pcie_nsid);
                break;
            }
            // Geometry as the store has it (the configured size, a file's, a device's LBA format),
            // kept here for the I/O path's range checks.
            n.blocks = n.store->block_count();
            n.block_size = n.store->block_size();
            if (n.block_size < 512 || n.block_size > 4096 || (n.block_size & (n.block_size - 1)))
                throw std::runtime_error(fmt::format("block size {} is not supported (512 to 4096)", n.block_size));
            while ((1u << n.lbads) < n.block_size) ++n.lbads;
        } catch (const std::exception& e) {
            throw std::runtime_error(fmt::format("subsystem {} namespace {}: {}", cfg.nqn, nc.nsid, e.what()));
        }
        _oncs &= n.store->optional_commands();
        if (uint32_t m = n.store->max_transfer_bytes(); m && m < _max_transfer) {
            _max_transfer = 4096;
            while (_max_transfer * 2 <= m) _max_transfer *= 2;  // MDTS is a power of two of pages
        }
        n.uuid = nc.uuid ? *nc.uuid : derive_id(cfg.nqn + "/ns/" + std::to_string(nc.nsid));
        n.nguid = derive_id(cfg.nqn + "/nguid/" + std::to_string(nc.nsid));
        auto e = derive_id(cfg.nqn + "/eui64/" + std::to_string(nc.nsid));
        std::copy_n(e.begin(), 8, n.eui64.begin());
        _namespaces.emplace(n.nsid, std::move(n));
    }
}

bool subsystem::host_allowed(const std::string& hostnqn) const {
    if (_discovery || _allow_any) return true;
    return std::find(_hosts.begin(), _hosts.end(), hostnqn) != _hosts.end();
}

const ns* subsystem::find_ns(uint32_t nsid) const {
    auto it = _namespaces.find(nsid);
    return it == _namespaces.end() ? nullptr : &it->second;
}

std::shared_ptr<controller> subsystem::create_controller(const std::string& hostnqn,
                                                         const std::array<uint8_t, 16>& hostid, uint32_t kato_ms) {
    std::lock_guard g(_lock);
    // Dynamic controller model: CNTLIDs 1..0xFFEF, never two live ones alike.
    for (unsigned tries = 0; tries < 0xFFEF; ++tries) {
        uint16_t id = _next_cntlid;
        _next_cntlid = _next_cntlid >= 0xFFEF ? 1 : _next_cntlid + 1;
        if (_controllers.count(id)) continue;
        auto c = std::make_shared<controller>(*this, id, hostnqn, hostid, kato_ms);
        _controllers.emplace(id, c);
        return c;
    }
    return nullptr;
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

}  // namespace ferry::target
