#include "target/target.hh"

#include <cstring>

#include "target/queue.hh"

namespace ferry::target {
namespace {
// A listener on every address of its family: discovery names the address the host reached,
// and a controller that connected through it takes its ANA states.
bool is_wildcard(const std::string& address) { return address == "0.0.0.0" || address == "::"; }
}  // namespace

target::target(const target_config& cfg) : _referrals(cfg.referrals) {
    for (const auto& l : cfg.listeners) _listeners.push_back(make_listener_entry(l));
    for (const auto& s : cfg.subsystems) _subsystems.push_back(std::make_shared<subsystem>(s, false));
    subsystem_config disc;
    disc.nqn = std::string(nvme::discovery_nqn);
    disc.allow_any_host = true;
    _discovery = std::make_shared<subsystem>(disc, true);
}

target::listener_entry target::make_listener_entry(const listener_config& l) {
    listener_entry e{l, _next_portid++, std::make_shared<ana_port>()};
    for (const auto& [group, state] : l.ana)
        if (valid_ana_group(group)) e.ana->set(group, state);  // add_listener and mgmt/ refuse others
    // A gateway group's groups: as on every other listener (tracked by _unlisted_ana too).
    for (uint32_t group : _managed_ana_groups) e.ana->set(group, _unlisted_ana->state(group));
    return e;
}

std::shared_ptr<const ana_port> target::ana_port_for(const transport::connection_info& via) const {
    std::lock_guard g(_lock);
    const listener_entry* wildcard = nullptr;
    for (const auto& l : _listeners) {
        if (l.cfg.port != via.local_port) continue;
        if (l.cfg.address == via.local_addr) return l.ana;
        if (is_wildcard(l.cfg.address)) wildcard = &l;
    }
    return wildcard ? wildcard->ana : _unlisted_ana;
}

std::shared_ptr<subsystem> target::find_locked(std::string_view nqn) const {
    if (nqn == nvme::discovery_nqn) return _discovery;
    for (const auto& s : _subsystems)
        if (s->nqn() == nqn) return s;
    return nullptr;
}

std::shared_ptr<subsystem> target::find_subsystem(std::string_view nqn) const {
    std::lock_guard g(_lock);
    return find_locked(nqn);
}

std::vector<std::shared_ptr<subsystem>> target::subsystems() const {
    std::lock_guard g(_lock);
    return _subsystems;
}

std::unique_ptr<transport::queue_handler> target::make_handler(transport::connection& conn) {
    return std::make_unique<queue>(*this, conn);
}

std::optional<transport::configured_psk> target::find_tls_psk(const std::string& hostnqn, const std::string& subnqn) {
    std::vector<std::shared_ptr<subsystem>> candidates;
    if (subnqn == nvme::discovery_nqn) {
        candidates = subsystems();
    } else if (auto s = find_subsystem(subnqn); s && !s->is_discovery()) {
        candidates.push_back(s);
    }
    for (const auto& s : candidates) {
        host_keys k = s->keys_of(hostnqn);
        if (k.tls_psk.empty()) continue;
        try {
            return transport::parse_psk_interchange(k.tls_psk);
        } catch (const std::invalid_argument&) {
            // Validated when it was set; cannot happen.
        }
    }
    return std::nullopt;
}

namespace {
// TREQ bits 1:0 (secure channel) and the TCP TSAS SECTYPE byte (nvme-reference.md 2.6).
constexpr uint8_t treq_secure_channel_required = 0x01, treq_secure_channel_not_required = 0x02;
constexpr uint8_t tsas_sectype_none = 0, tsas_sectype_tls13 = 2;
// EFLAGS (TP 8013): DUPRETINFO, EPCSD.
constexpr uint16_t eflags_duplicate_info = 0x01, eflags_persistent_ok = 0x02;

uint8_t adrfam_of(const std::string& addr) {
    return addr.find(':') != std::string::npos ? nvme::adrfam_ipv6 : nvme::adrfam_ipv4;
}
}  // namespace

std::vector<uint8_t> target::discovery_log(const std::string& hostnqn, const transport::connection_info& via) const {
    std::vector<nvme::discovery_log_entry> entries;
    auto add = [&](const std::string& nqn, uint8_t subtype, const std::string& addr, uint16_t port, uint16_t portid,
                   uint8_t treq, transport::tls_mode tls) {
        nvme::discovery_log_entry e{};
        e.trtype = nvme::trtype_tcp;
        e.adrfam = adrfam_of(addr);
        e.subtype = subtype;
        e.treq = treq;
        e.tsas[0] = tls == transport::tls_mode::none ? tsas_sectype_none : tsas_sectype_tls13;
        // This discovery service on every listener: each returns the same log (DUPRETINFO) and
        // takes persistent connections, with AENs and Keep Alive (EPCSD), as SPDK's says.
        if (subtype == nvme::subtype_current_discovery) e.eflags = eflags_duplicate_info | eflags_persistent_ok;
        e.portid = portid;
        e.cntlid = 0xFFFF;
        e.asqsz = 32;
        nvme::copy_nul_padded(e.trsvcid, sizeof(e.trsvcid), std::to_string(port));
        nvme::copy_nul_padded(e.subnqn, sizeof(e.subnqn), nqn);
        nvme::copy_nul_padded(e.traddr, sizeof(e.traddr), addr);
        entries.push_back(e);
    };
    // TREQ secure channel and TSAS SECTYPE as Linux nvmet sets them for a "tls1.3" port:
    // required (1) by default, not required (2) when plain is also accepted; none = 0/0.
    auto listener_treq = [](transport::tls_mode tls) {
        uint8_t treq = nvme::treq_sqflow_disable_supported;
        if (tls == transport::tls_mode::required) treq |= treq_secure_channel_required;
        if (tls == transport::tls_mode::allowed) treq |= treq_secure_channel_not_required;
        return treq;
    };
    const std::string discovery_nqn(nvme::discovery_nqn);
    // The log and its GENCTR are read under the lock every change takes, so they agree.
    std::lock_guard g(_lock);
    for (const auto& l : _listeners) {
        const bool wildcard = is_wildcard(l.cfg.address);
        // A wildcard listener is reached at the address the host used: only where the family is
        // the same (IPv6 listeners are IPV6_V6ONLY; a host on IPv4 cannot use "::").
        if (wildcard && !via.local_addr.empty() && adrfam_of(l.cfg.address) != adrfam_of(via.local_addr)) continue;
        const std::string& addr = wildcard ? via.local_addr : l.cfg.address;
        const uint8_t treq = listener_treq(l.cfg.tls);
        add(discovery_nqn, nvme::subtype_current_discovery, addr, l.cfg.port, l.portid, treq, l.cfg.tls);
        for (const auto& s : _subsystems) {
            if (!s->host_allowed(hostnqn)) continue;
            // A host with a TLS PSK for the subsystem is refused without TLS (Connect): a listener
            // without TLS is no path for it, and one that allows TLS requires it of this host.
            const bool host_needs_tls = !hostnqn.empty() && !s->keys_of(hostnqn).tls_psk.empty();
            if (host_needs_tls && l.cfg.tls == transport::tls_mode::none) continue;
            const uint8_t host_treq = host_needs_tls ? uint8_t((treq & ~3) | treq_secure_channel_required) : treq;
            add(s->nqn(), nvme::subtype_nvm, addr, l.cfg.port, l.portid, host_treq, l.cfg.tls);
        }
    }
    // Referrals: other discovery services (SUBTYPE 01h), as Linux nvmet lists its referrals.
    // Nothing is known of their requirements: TREQ not specified (no SQ flow control claim).
    uint16_t referral_portid = 0xFF00;  // outside the listeners' Port IDs
    for (const auto& r : _referrals)
        add(discovery_nqn, nvme::subtype_referral, r.address, r.port, referral_portid++, 0, transport::tls_mode::none);
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
