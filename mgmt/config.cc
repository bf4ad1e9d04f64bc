#include "mgmt/config.hh"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "env/pci.hh"

namespace ferry::mgmt {
namespace {
using json = nlohmann::json;

class reader {
public:
    explicit reader(std::string origin) : _origin(std::move(origin)) {}

    [[noreturn]] void fail(const std::string& path, const std::string& what) const {
        throw config_error(_origin + ": " + (path.empty() ? "/" : path) + ": " + what);
    }

    void only_keys(const json& obj, const std::string& path, std::initializer_list<const char*> keys) const {
        for (auto it = obj.begin(); it != obj.end(); ++it) {
            bool ok = false;
            for (const char* k : keys) ok |= it.key() == k;
            if (!ok) {
                std::string list;
                for (const char* k : keys) list += std::string(list.empty() ? "" : ", ") + k;
                fail(path + "/" + it.key(), "unknown key (expected one of: " + list + ")");
            }
        }
    }

    const json& object(const json& parent, const std::string& key, const std::string& path) const {
        if (!parent.contains(key)) fail(path + "/" + key, "missing");
        const json& v = parent[key];
        if (!v.is_object()) fail(path + "/" + key, "must be an object");
        return v;
    }

    std::string string(const json& obj, const std::string& key, const std::string& path, bool required,
                       const std::string& dflt = {}) const {
        if (!obj.contains(key)) {
            if (required) fail(path + "/" + key, "missing");
            return dflt;
        }
        if (!obj[key].is_string()) fail(path + "/" + key, "must be a string");
        return obj[key].get<std::string>();
    }

    uint64_t unsigned_int(const json& obj, const std::string& key, const std::string& path, bool required,
                          uint64_t dflt, uint64_t lo, uint64_t hi) const {
        if (!obj.contains(key)) {
            if (required) fail(path + "/" + key, "missing");
            return dflt;
        }
        const json& v = obj[key];
        if (!v.is_number_unsigned()) fail(path + "/" + key, "must be a non-negative integer");
        uint64_t x = v.get<uint64_t>();
        if (x < lo || x > hi)
            fail(path + "/" + key, std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
                                       std::to_string(hi) + "]");
        return x;
    }

    bool boolean(const json& obj, const std::string& key, const std::string& path, bool dflt) const {
        if (!obj.contains(key)) return dflt;
        if (!obj[key].is_boolean()) fail(path + "/" + key, "must be true or false");
        return obj[key].get<bool>();
    }

    const json& array(const json& obj, const std::string& key, const std::string& path, bool required) const {
        static const json empty = json::array();
        if (!obj.contains(key)) {
            if (required) fail(path + "/" + key, "missing");
            return empty;
        }
        if (!obj[key].is_array()) fail(path + "/" + key, "must be an array");
        return obj[key];
    }

private:
    std::string _origin;
};

bool valid_nqn(const std::string& s) { return s.size() >= 11 && s.size() <= 223 && s.rfind("nqn.", 0) == 0; }

std::optional<std::array<uint8_t, 16>> parse_uuid(const std::string& s) {
    std::array<uint8_t, 16> out{};
    if (s.size() != 36) return std::nullopt;
    size_t j = 0;
    for (size_t i = 0; i < 36; ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return std::nullopt;
            continue;
        }
        int v = std::isxdigit(static_cast<unsigned char>(s[i])) ? std::stoi(std::string(1, s[i]), nullptr, 16) : -1;
        if (v < 0) return std::nullopt;
        out[j / 2] = static_cast<uint8_t>(out[j / 2] | (j % 2 ? v : v << 4));
        ++j;
    }
    return out;
}
}  // namespace

uint64_t parse_size(const std::string& s) {
    size_t i = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == 0 || i > 19) throw std::invalid_argument("'" + s + "' is not a size (e.g. 1GiB, 512MiB, 4096)");
    uint64_t n = std::stoull(s.substr(0, i));
    std::string unit = s.substr(i);
    uint64_t mult;
    if (unit.empty() || unit == "B")
        mult = 1;
    else if (unit == "KiB")
        mult = 1ull << 10;
    else if (unit == "MiB")
        mult = 1ull << 20;
    else if (unit == "GiB")
        mult = 1ull << 30;
    else if (unit == "TiB")
        mult = 1ull << 40;
    else
        throw std::invalid_argument("'" + s + "': unknown unit '" + unit + "' (use B, KiB, MiB, GiB or TiB)");
    if (n > (~0ull) / mult) throw std::invalid_argument("'" + s + "' is too large");
    return n * mult;
}

// "pcie://0000:00:04.0/1": the controller's PCI address and the namespace on it. Size and block
// size come from the device, so the keys for them are refused.
static void parse_pcie_device(const reader& r, const json& js, const std::string& np, target::namespace_config& nc) {
    const std::string dev = r.string(js, "device", np, true);
    constexpr std::string_view scheme = "pcie://";
    const size_t slash = dev.rfind('/');
    const std::string bdf =
        dev.starts_with(scheme) && slash > scheme.size() ? dev.substr(scheme.size(), slash - scheme.size()) : "";
    const std::string ns_text = slash == std::string::npos ? "" : dev.substr(slash + 1);
    if (!env::valid_bdf(bdf) || ns_text.empty() || ns_text.size() > 10 ||
        !std::all_of(ns_text.begin(), ns_text.end(), [](unsigned char c) { return std::isdigit(c); }))
        r.fail(np + "/device", "'" + dev + "' is not pcie://DOMAIN:BUS:DEV.FN/NSID (e.g. pcie://0000:00:04.0/1)");
    nc.pcie_address = bdf;
    std::transform(nc.pcie_address.begin(), nc.pcie_address.end(), nc.pcie_address.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });  // as sysfs spells it
    const uint64_t nsid = std::stoull(ns_text);
    if (nsid == 0 || nsid > 0xFFFFFFFEull) r.fail(np + "/device", "NSID must be 1..4294967294");
    nc.pcie_nsid = static_cast<uint32_t>(nsid);
    for (const char* k : {"size", "block_size"})
        if (js.contains(k)) r.fail(np + "/" + k, "comes from the device for the pcie backend");
}

target::target_config parse_config(const std::string& text, const std::string& origin) {
    reader r(origin);
    json root;
    try {
        root = json::parse(text);
    } catch (const json::parse_error& e) {
        throw config_error(origin + ": not valid JSON: " + e.what());
    }
    if (!root.is_object()) r.fail("", "the configuration must be a JSON object");
    r.only_keys(root, "", {"listeners", "subsystems"});

    target::target_config cfg;
    const json& listeners = r.array(root, "listeners", "", true);
    if (listeners.empty()) r.fail("/listeners", "at least one listener is needed");
    std::set<std::pair<std::string, uint16_t>> seen_listeners;
    for (size_t i = 0; i < listeners.size(); ++i) {
        const std::string p = "/listeners/" + std::to_string(i);
        const json& l = listeners[i];
        if (!l.is_object()) r.fail(p, "must be an object");
        r.only_keys(l, p, {"transport", "address", "port"});
        std::string tr = r.string(l, "transport", p, false, "tcp");
        if (tr != "tcp") r.fail(p + "/transport", "'" + tr + "' is not supported (only \"tcp\")");
        target::listener_config lc;
        lc.address = r.string(l, "address", p, true);
        lc.port = static_cast<uint16_t>(r.unsigned_int(l, "port", p, false, 4420, 1, 65535));
        if (!seen_listeners.insert({lc.address, lc.port}).second) r.fail(p, "duplicate listener");
        cfg.listeners.push_back(lc);
    }

    const json& subsystems = r.array(root, "subsystems", "", true);
    std::set<std::string> seen_nqns;
    for (size_t i = 0; i < subsystems.size(); ++i) {
        const std::string p = "/subsystems/" + std::to_string(i);
        const json& s = subsystems[i];
        if (!s.is_object()) r.fail(p, "must be an object");
        r.only_keys(s, p, {"nqn", "serial", "model", "allow_any_host", "hosts", "namespaces"});
        target::subsystem_config sc;
        sc.nqn = r.string(s, "nqn", p, true);
        if (!valid_nqn(sc.nqn))
            r.fail(p + "/nqn", "'" + sc.nqn + "' is not an NQN (nqn.yyyy-mm.reverse.domain:name, at most 223 bytes)");
        if (sc.nqn == "nqn.2014-08.org.nvmexpress.discovery") r.fail(p + "/nqn", "the discovery NQN is reserved");
        if (!seen_nqns.insert(sc.nqn).second) r.fail(p + "/nqn", "duplicate subsystem " + sc.nqn);
        sc.serial = r.string(s, "serial", p, false);
        if (sc.serial.size() > 20) r.fail(p + "/serial", "at most 20 characters");
        sc.model = r.string(s, "model", p, false, "ferry");
        if (sc.model.size() > 40) r.fail(p + "/model", "at most 40 characters");
        sc.allow_any_host = r.boolean(s, "allow_any_host", p, false);
        const json& hosts = r.array(s, "hosts", p, false);
        for (size_t h = 0; h < hosts.size(); ++h) {
            const std::string hp = p + "/hosts/" + std::to_string(h);
            if (!hosts[h].is_string() || !valid_nqn(hosts[h].get<std::string>())) r.fail(hp, "must be a host NQN string");
            sc.hosts.push_back(hosts[h].get<std::string>());
        }
        if (!sc.allow_any_host && sc.hosts.empty())
            r.fail(p, "no host could connect: set \"allow_any_host\": true or list \"hosts\"");
        const json& nss = r.array(s, "namespaces", p, false);
        std::set<uint32_t> nsids;
        for (size_t n = 0; n < nss.size(); ++n) {
            const std::string np = p + "/namespaces/" + std::to_string(n);
            const json& js = nss[n];
            if (!js.is_object()) r.fail(np, "must be an object");
            r.only_keys(js, np, {"nsid", "backend", "size", "block_size", "uuid", "path", "device"});
            target::namespace_config nc;
            nc.nsid = static_cast<uint32_t>(r.unsigned_int(js, "nsid", np, false, n + 1, 1, target::max_nsid));
            if (!nsids.insert(nc.nsid).second) r.fail(np + "/nsid", "duplicate NSID " + std::to_string(nc.nsid));
            std::string backend = r.string(js, "backend", np, false, "ram");
            if (backend == "ram")
                nc.backend = target::backend_kind::ram;
            else if (backend == "null")
                nc.backend = target::backend_kind::null;
            else if (backend == "file")
                nc.backend = target::backend_kind::file;
            else if (backend == "pcie")
                nc.backend = target::backend_kind::pcie;
            else
                r.fail(np + "/backend", "'" + backend + "' is not a backend (ram, null, file, pcie)");
            const bool file = nc.backend == target::backend_kind::file;
            const bool pcie = nc.backend == target::backend_kind::pcie;
            if (pcie) {
                parse_pcie_device(r, js, np, nc);
            } else if (js.contains("device")) {
                r.fail(np + "/device", "only for the pcie backend");
            }
            if (file) {
                nc.path = r.string(js, "path", np, true);
                if (nc.path.empty() || nc.path[0] != '/') r.fail(np + "/path", "must be an absolute path");
            } else if (js.contains("path")) {
                r.fail(np + "/path", "only for the file backend");
            }
            if (!pcie) {
                nc.block_size = static_cast<uint32_t>(r.unsigned_int(js, "block_size", np, false, 4096, 512, 4096));
                if (nc.block_size != 512 && nc.block_size != 4096) r.fail(np + "/block_size", "must be 512 or 4096");
                if (!js.contains("size") && !file) r.fail(np + "/size", "missing");
            }
            if (js.contains("size")) {
                const json& sz = js["size"];
                try {
                    if (sz.is_number_unsigned())
                        nc.size_bytes = sz.get<uint64_t>();
                    else if (sz.is_string())
                        nc.size_bytes = parse_size(sz.get<std::string>());
                    else
                        r.fail(np + "/size", "must be a size string (\"1GiB\") or a number of bytes");
                } catch (const std::invalid_argument& e) {
                    r.fail(np + "/size", e.what());
                }
                if (nc.size_bytes == 0 || nc.size_bytes % nc.block_size)
                    r.fail(np + "/size",
                           "must be a non-zero multiple of block_size (" + std::to_string(nc.block_size) + ")");
            }
            if (js.contains("uuid")) {
                std::string u = r.string(js, "uuid", np, true);
                nc.uuid = parse_uuid(u);
                if (!nc.uuid) r.fail(np + "/uuid", "'" + u + "' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
            }
            sc.namespaces.push_back(nc);
        }
        cfg.subsystems.push_back(std::move(sc));
    }
    return cfg;
}

namespace {
std::string mib(uint64_t bytes) {
    return std::to_string(bytes >> 20) + " MiB";
}
}  // namespace

ram_budget default_ram_budget(uint64_t pool_bytes) {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    const uint64_t physical = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
    const uint64_t reserve = std::max<uint64_t>(1ull << 30, physical / 16);
    ram_budget b;
    b.bytes = physical > reserve + pool_bytes ? physical - reserve - pool_bytes : 0;
    b.origin = "physical memory " + mib(physical) + " minus a reserve of " + mib(reserve) + " minus " +
               mib(pool_bytes) + " of buffer pools; --max-ram-mib sets it";
    return b;
}

void check_ram_budget(const target::target_config& cfg, const ram_budget& budget, const std::string& origin) {
    uint64_t sum = 0;
    for (size_t i = 0; i < cfg.subsystems.size(); ++i) {
        const auto& nss = cfg.subsystems[i].namespaces;
        for (size_t n = 0; n < nss.size(); ++n) {
            if (nss[n].backend != target::backend_kind::ram) continue;
            sum += nss[n].size_bytes;
            if (sum <= budget.bytes) continue;
            const std::string what =
                sum == nss[n].size_bytes
                    ? "a RAM namespace of " + std::to_string(nss[n].size_bytes) + " bytes (" + mib(sum) + ")"
                    : "RAM namespaces of " + std::to_string(sum) + " bytes (" + mib(sum) +
                          ") in all, with this one of " + mib(nss[n].size_bytes);
            throw config_error(origin + ": /subsystems/" + std::to_string(i) + "/namespaces/" + std::to_string(n) +
                               "/size: " + what + " cannot be served: ferry may use " + std::to_string(budget.bytes) +
                               " bytes (" + mib(budget.bytes) + ") for RAM namespaces (" + budget.origin + ")");
        }
    }
}

target::target_config load_config_file(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw config_error(path + ": cannot open: " + std::strerror(errno));
    std::stringstream ss;
    ss << f.rdbuf();
    return parse_config(ss.str(), path);
}

}  // namespace ferry::mgmt
