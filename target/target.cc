#include "target/target.hh"

#include <cstring>

#include "target/queue.hh"

namespace ferry::target {

target::target(const target_config& cfg) : _listeners(cfg.listeners) {
    for (const auto& s : cfg.subsystems) _subsystems.push_back(std::make_unique<subsystem>(s, false));
    subsystem_config disc;
    disc.nqn = std::string(nvme::discovery_nqn);
    disc.allow_any_host = true;
    _discovery = std::make_unique<subsystem>(disc, true);
}

subsystem* target::find_subsystem(std::string_view nqn) {
    if (nqn == nvme::discovery_nqn) return _discovery.get();
    for (auto& s : _subsystems)
        if (s->nqn() == nqn) return s.get();
    return nullptr;
}

std::unique_ptr<transport::queue_handler> target::make_handler(transport::connection& conn) {
    return std::make_unique<queue>(*this, conn);
}

std::vector<uint8_t> target::discovery_log(const std::string& hostnqn, const transport::connection_info& via) const {
    std::vector<nvme::discovery_log_entry> entries;
    auto add = [&](const std::string& nqn, uint8_t subtype, size_t listener_index) {
        const listener_config& l = _listeners[listener_index];
        nvme::discovery_log_entry e{};
        e.trtype = nvme::trtype_tcp;
        const bool wildcard = l.address == "0.0.0.0" || l.address == "::";
        const std::string& addr = wildcard ? via.local_addr : l.address;
        e.adrfam = addr.find(':') != std::string::npos ? nvme::adrfam_ipv6 : nvme::adrfam_ipv4;
        e.subtype = subtype;
        e.treq = nvme::treq_sqflow_disable_supported;  // secure channel: not specified
        e.portid = static_cast<uint16_t>(listener_index + 1);
        e.cntlid = 0xFFFF;
        e.asqsz = 32;
        nvme::copy_nul_padded(e.trsvcid, sizeof(e.trsvcid), std::to_string(l.port));
        nvme::copy_nul_padded(e.subnqn, sizeof(e.subnqn), nqn);
        nvme::copy_nul_padded(e.traddr, sizeof(e.traddr), addr);
        entries.push_back(e);
    };
    for (size_t li = 0; li < _listeners.size(); ++li) {
        add(std::string(nvme::discovery_nqn), nvme::subtype_current_discovery, li);
        for (const auto& s : _subsystems)
            if (s->host_allowed(hostnqn)) add(s->nqn(), nvme::subtype_nvm, li);
    }
    nvme::discovery_log_header h{};
    h.genctr = _genctr.load();
    h.numrec = entries.size();
    h.recfmt = 0;
    std::vector<uint8_t> page(sizeof(h) + entries.size() * sizeof(nvme::discovery_log_entry));
    std::memcpy(page.data(), &h, sizeof(h));
    if (!entries.empty()) std::memcpy(page.data() + sizeof(h), entries.data(), entries.size() * sizeof(entries[0]));
    return page;
}

}  // namespace ferry::target
