#include "mgmt/config.hh"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "env/pci.hh"
#include "mgmt/key_files.hh"
#include "target/ana.hh"
#include "target/dhchap.hh"
#include "transport/tls.hh"

namespace ferry::mgmt {
namespace {
using json = nlohmann::json;
using ek = config_error::kind;

class reader {
public:
    explicit reader(std::string origin) : _origin(std::move(origin)) {}

    // A well-formed value that is not acceptable (422).
    [[noreturn]] void fail(const std::string& path, const std::string& what) const {
        throw config_error(ek::invalid, _origin, path.empty() ? "/" : path, what);
    }
    // The document's shape is wrong: a type, a missing or unknown key (400).
    [[noreturn]] void malformed(const std::string& path, const std::string& what) const {
        throw config_error(ek::malformed, _origin, path.empty() ? "/" : path, what);
    }

    void object_with(const json& obj, const std::string& path, std::initializer_list<const char*> keys) const {
        if (!obj.is_object()) malformed(path, "must be an object");
        for (auto it = obj.begin(); it != obj.end(); ++it) {
            bool ok = false;
            for (const char* k : keys) ok |= it.key() == k;
            if (!ok) {
                std::string list;
                for (const char* k : keys) list += std::string(list.empty() ? "" : ", ") + k;
                malformed(path + "/" + it.key(), "unknown key (expected one of: " + list + ")");
            }
        }
    }

    std::string string(const json& obj, const std::string& key, const std::string& path, bool required,
                       const std::string& dflt = {}) const {
        if (!obj.contains(key)) {
            if (required) malformed(path + "/" + key, "missing");
            return dflt;
        }
        if (!obj[key].is_string()) malformed(path + "/" + key, "must be a string");
        return obj[key].get<std::string>();
    }

    uint64_t unsigned_int(const json& obj, const std::string& key, const std::string& path, bool required,
                          uint64_t dflt, uint64_t lo, uint64_t hi) const {
        if (!obj.contains(key)) {
            if (required) malformed(path + "/" + key, "missing");
            return dflt;
        }
        const json& v = obj[key];
        if (!v.is_number_integer()) malformed(path + "/" + key, "must be a non-negative integer");
        if (!v.is_number_unsigned())
            fail(path + "/" + key, std::to_string(v.get<int64_t>()) + " is out of range [" + std::to_string(lo) + ", " +
                                       std::to_string(hi) + "]");
        uint64_t x = v.get<uint64_t>();
        if (x < lo || x > hi)
            fail(path + "/" + key,
                 std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return x;
    }

    bool boolean(const json& obj, const std::string& key, const std::string& path, bool dflt) const {
        if (!obj.contains(key)) return dflt;
        if (!obj[key].is_boolean()) malformed(path + "/" + key, "must be true or false");
        return obj[key].get<bool>();
    }

    const json& array(const json& obj, const std::string& key, const std::string& path, bool required) const {
        static const json empty = json::array();
        if (!obj.contains(key)) {
            if (required) malformed(path + "/" + key, "missing");
            return empty;
        }
        if (!obj[key].is_array()) malformed(path + "/" + key, "must be an array");
        return obj[key];
    }

private:
    std::string _origin;
};

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// `n` bytes of hex digits; dashes are allowed anywhere (UUID layout, "0102-...").
template <size_t N>
std::optional<std::array<uint8_t, N>> parse_hex_bytes(const std::string& s, bool uuid_layout) {
    std::array<uint8_t, N> out{};
    if (uuid_layout && (s.size() != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-'))
        return std::nullopt;
    size_t j = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        if (uuid_layout && (i == 8 || i == 13 || i == 18 || i == 23)) continue;
        const int v = hex_digit(s[i]);
        if (v < 0 || j >= 2 * N) return std::nullopt;
        out[j / 2] = static_cast<uint8_t>(out[j / 2] | (j % 2 ? v : v << 4));
        ++j;
    }
    if (j != 2 * N) return std::nullopt;
    return out;
}
}  // namespace

std::string hex_text(std::span<const uint8_t> bytes) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    s.reserve(2 * bytes.size());
    for (uint8_t x : bytes) {
        s += digits[x >> 4];
        s += digits[x & 15];
    }
    return s;
}

std::string nqn_problem(const std::string& nqn) {
    if (nqn.empty()) return "an NQN must not be empty";
    if (nqn.size() > 223) return "an NQN is at most 223 bytes (this one has " + std::to_string(nqn.size()) + ")";
    for (unsigned char c : nqn)
        if (c <= 0x20 || c == 0x7f) return "an NQN must not contain spaces or control characters";
    return "";
}

bool nqn_in_spec_form(const std::string& nqn) {
    static const std::regex dated(R"(^nqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[A-Za-z0-9].*)");
    static const std::regex uuid(
        R"(^nqn\.2014-08\.org\.nvmexpress:uuid:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$)");
    if (nqn.starts_with("nqn.2014-08.org.nvmexpress:uuid:")) return std::regex_match(nqn, uuid);
    return std::regex_match(nqn, dated);
}

std::string uuid_text(const std::array<uint8_t, 16>& u) {
    const std::string h = hex_text(u);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

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

json parse_json_text(const std::string& text, const std::string& origin) {
    try {
        return json::parse(text, nullptr, true, /*ignore_comments=*/true);
    } catch (const json::parse_error& e) {
        throw config_error(ek::malformed, origin, "", std::string("not valid JSON: ") + e.what());
    }
}

// "pcie://0000:00:04.0/1" (the older spelling) or "pcie_address" + "pcie_nsid": the controller's
// PCI address and the namespace on it. Size and block size come from the device.
static void parse_pcie(const reader& r, const json& js, const std::string& np, target::namespace_config& nc) {
    std::string bdf, where;
    uint64_t nsid = 0;
    if (js.contains("device")) {
        if (js.contains("pcie_address") || js.contains("pcie_nsid"))
            r.fail(np + "/device", "give either \"device\" or \"pcie_address\" and \"pcie_nsid\"");
        const std::string dev = r.string(js, "device", np, true);
        constexpr std::string_view scheme = "pcie://";
        const size_t slash = dev.rfind('/');
        bdf = dev.starts_with(scheme) && slash > scheme.size() ? dev.substr(scheme.size(), slash - scheme.size()) : "";
        const std::string ns_text = slash == std::string::npos ? "" : dev.substr(slash + 1);
        if (!env::valid_bdf(bdf) || ns_text.empty() || ns_text.size() > 10 ||
            !std::all_of(ns_text.begin(), ns_text.end(), [](unsigned char c) { return std::isdigit(c); }))
            r.fail(np + "/device", "'" + dev + "' is not pcie://DOMAIN:BUS:DEV.FN/NSID (e.g. pcie://0000:00:04.0/1)");
        nsid = std::stoull(ns_text);
        where = np + "/device";
    } else {
        if (!js.contains("pcie_address"))
            r.malformed(np + "/device", "missing (or \"pcie_address\" and \"pcie_nsid\")");
        bdf = r.string(js, "pcie_address", np, true);
        if (!env::valid_bdf(bdf)) r.fail(np + "/pcie_address", "'" + bdf + "' is not a PCI address (0000:00:04.0)");
        nsid = r.unsigned_int(js, "pcie_nsid", np, true, 0, 0, 0xFFFFFFFFull);
        where = np + "/pcie_nsid";
    }
    nc.pcie_address = bdf;
    std::transform(nc.pcie_address.begin(), nc.pcie_address.end(), nc.pcie_address.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });  // as sysfs spells it
    if (nsid == 0 || nsid > 0xFFFFFFFEull) r.fail(where, "NSID must be 1..4294967294");
    nc.pcie_nsid = static_cast<uint32_t>(nsid);
    for (const char* k : {"size", "block_size"})
        if (js.contains(k)) r.fail(np + "/" + k, "comes from the device for the pcie backend");
}

target::namespace_config parse_namespace(const json& js, const std::string& np, const std::string& origin,
                                         uint32_t default_nsid) {
    reader r(origin);
    r.object_with(js, np,
                  {"nsid", "backend", "size", "block_size", "uuid", "nguid", "eui64", "path", "device", "pcie_address",
                   "pcie_nsid", "pool", "image", "ceph_conf", "client", "ana_group"});
    target::namespace_config nc;
    nc.nsid = static_cast<uint32_t>(r.unsigned_int(js, "nsid", np, false, default_nsid, 1, target::max_nsid));
    nc.ana_group = static_cast<uint32_t>(r.unsigned_int(js, "ana_group", np, false, 1, 1, target::max_ana_groups));
    std::string backend = r.string(js, "backend", np, false, "ram");
    if (backend == "ram")
        nc.backend = target::backend_kind::ram;
    else if (backend == "null")
        nc.backend = target::backend_kind::null;
    else if (backend == "file")
        nc.backend = target::backend_kind::file;
    else if (backend == "pcie")
        nc.backend = target::backend_kind::pcie;
    else if (backend == "rbd")
        nc.backend = target::backend_kind::rbd;
    else
        r.fail(np + "/backend", "'" + backend + "' is not a backend (ram, null, file, pcie, rbd)");
    const bool file = nc.backend == target::backend_kind::file;
    const bool pcie = nc.backend == target::backend_kind::pcie;
    if (pcie) {
        parse_pcie(r, js, np, nc);
    } else {
        for (const char* k : {"device", "pcie_address", "pcie_nsid"})
            if (js.contains(k)) r.fail(np + "/" + k, "only for the pcie backend");
    }
    if (file) {
        nc.path = r.string(js, "path", np, true);
        if (nc.path.empty() || nc.path[0] != '/') r.fail(np + "/path", "must be an absolute path");
    } else if (js.contains("path")) {
        r.fail(np + "/path", "only for the file backend");
    }
    const bool rbd = nc.backend == target::backend_kind::rbd;
    if (rbd) {
        for (const char* k : {"pool", "image"})
            if (!js.contains(k)) r.fail(np + "/" + k, "missing: the rbd backend needs the image's pool and name");
        nc.rbd.pool = r.string(js, "pool", np, true);
        if (nc.rbd.pool.empty()) r.fail(np + "/pool", "must not be empty");
        nc.rbd.image = r.string(js, "image", np, true);
        if (nc.rbd.image.empty()) r.fail(np + "/image", "must not be empty");
        nc.rbd.ceph_conf = r.string(js, "ceph_conf", np, false);
        if (js.contains("ceph_conf") && (nc.rbd.ceph_conf.empty() || nc.rbd.ceph_conf[0] != '/'))
            r.fail(np + "/ceph_conf", "must be an absolute path");
        nc.rbd.client = r.string(js, "client", np, false, "admin");
        if (nc.rbd.client.empty() || nc.rbd.client.starts_with("client."))
            r.fail(np + "/client", "must be a cephx user name without \"client.\" (e.g. admin)");
        if (js.contains("size")) r.fail(np + "/size", "comes from the image for the rbd backend");
    } else {
        for (const char* k : {"pool", "image", "ceph_conf", "client"})
            if (js.contains(k)) r.fail(np + "/" + k, "only for the rbd backend");
    }
    if (!pcie) {
        nc.block_size = static_cast<uint32_t>(r.unsigned_int(js, "block_size", np, false, 4096, 512, 4096));
        if (nc.block_size != 512 && nc.block_size != 4096) r.fail(np + "/block_size", "must be 512 or 4096");
        if (!js.contains("size") && !file && !rbd) r.malformed(np + "/size", "missing");
    }
    if (js.contains("size")) {
        const json& sz = js["size"];
        try {
            if (sz.is_number_unsigned())
                nc.size_bytes = sz.get<uint64_t>();
            else if (sz.is_string())
                nc.size_bytes = parse_size(sz.get<std::string>());
            else
                r.malformed(np + "/size", "must be a size string (\"1GiB\") or a number of bytes");
        } catch (const std::invalid_argument& e) {
            r.fail(np + "/size", e.what());
        }
        if (nc.size_bytes == 0 || nc.size_bytes % nc.block_size)
            r.fail(np + "/size", "must be a non-zero multiple of block_size (" + std::to_string(nc.block_size) + ")");
    }
    if (js.contains("uuid")) {
        std::string u = r.string(js, "uuid", np, true);
        nc.uuid = parse_hex_bytes<16>(u, true);
        if (!nc.uuid) r.fail(np + "/uuid", "'" + u + "' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
    }
    if (js.contains("nguid")) {
        std::string u = r.string(js, "nguid", np, true);
        nc.nguid = parse_hex_bytes<16>(u, false);
        if (!nc.nguid) r.fail(np + "/nguid", "'" + u + "' is not an NGUID (32 hex digits)");
    }
    if (js.contains("eui64")) {
        std::string u = r.string(js, "eui64", np, true);
        nc.eui64 = parse_hex_bytes<8>(u, false);
        if (!nc.eui64) r.fail(np + "/eui64", "'" + u + "' is not an EUI-64 (16 hex digits)");
    }
    return nc;
}

std::string& key_field(target::host_keys& k, const std::string& field) {
    if (field == "dhchap_key") return k.dhchap_key;
    if (field == "dhchap_ctrl_key") return k.dhchap_ctrl_key;
    if (field == "tls_psk") return k.tls_psk;
    throw std::logic_error("no key field " + field);
}

const std::string& key_field(const target::host_keys& k, const std::string& field) {
    return key_field(const_cast<target::host_keys&>(k), field);
}

namespace {
// The key parses as its field's format; the reason is the parser's (which never quotes it).
void check_key(const reader& r, const std::string& field, const std::string& key, const std::string& where) {
    try {
        if (field == "tls_psk")
            transport::parse_psk_interchange(key);
        else
            target::parse_dhchap_secret(key);
    } catch (const std::invalid_argument& e) {
        r.fail(where, std::string(field == "tls_psk" ? "not a TLS PSK in the interchange format (NVMeTLSkey-1:HH:...:)"
                                                     : "not a DH-HMAC-CHAP secret (DHHC-1:HH:...:)") +
                          ": " + e.what());
    }
}

void check_key_pair(const reader& r, const target::host_keys& k, const std::string& path) {
    if (!k.dhchap_ctrl_key.empty() && k.dhchap_key.empty())
        r.fail(path + "/dhchap_ctrl_key",
               "needs dhchap_key (bidirectional authentication: the host authenticates first)");
}
}  // namespace

host_entry parse_host(const json& j, const std::string& path, const std::string& origin,
                      const std::string* key_file_dir) {
    reader r(origin);
    host_entry h;
    std::string where = path;
    if (j.is_string()) {
        h.nqn = j.get<std::string>();
    } else {
        r.object_with(j, path,
                      {"nqn", "dhchap_key", "dhchap_ctrl_key", "tls_psk", "dhchap_key_file", "dhchap_ctrl_key_file",
                       "tls_psk_file"});
        h.nqn = r.string(j, "nqn", path, true);
        where = path + "/nqn";
    }
    if (std::string why = nqn_problem(h.nqn); !why.empty()) r.fail(where, "'" + h.nqn + "': " + why);
    if (j.is_string()) return h;
    for (const char* f : host_key_fields) {
        const std::string field = f, file_field = field + "_file";
        std::string& key = key_field(h.keys, field);
        if (j.contains(field) && j.contains(file_field))
            r.fail(path + "/" + file_field, "give either " + field + " or " + file_field);
        if (j.contains(field)) {
            if (!j[field].is_string()) r.malformed(path + "/" + field, "must be a string");
            key = j[field].get<std::string>();
            if (key.empty()) r.fail(path + "/" + field, "must not be empty (leave the field out for no key)");
            check_key(r, field, key, path + "/" + field);
        } else if (j.contains(file_field)) {
            if (!key_file_dir)
                r.fail(path + "/" + file_field,
                       "a key file is read from the configuration file only; give the key itself (ferryctl's "
                       "--*-file options read a file for you)");
            std::string file = r.string(j, file_field, path, true);
            if (file.empty()) r.fail(path + "/" + file_field, "must not be empty");
            if (file[0] != '/') file = *key_file_dir + "/" + file;
            try {
                key = read_key_file(file);
            } catch (const std::exception& e) {
                r.fail(path + "/" + file_field, e.what());
            }
            check_key(r, field, key, path + "/" + file_field);
            h.key_files[field] = file;
        }
    }
    check_key_pair(r, h.keys, path);
    return h;
}

void patch_host_keys(const json& j, const std::string& origin, target::host_keys& keys) {
    reader r(origin);
    r.object_with(j, "", {"dhchap_key", "dhchap_ctrl_key", "tls_psk"});
    if (j.empty()) r.malformed("/", "nothing to change (give dhchap_key, dhchap_ctrl_key or tls_psk; null clears)");
    target::host_keys out = keys;
    for (const char* f : host_key_fields) {
        const std::string field = f;
        if (!j.contains(field)) continue;
        std::string& key = key_field(out, field);
        if (j[field].is_null()) {
            wipe(key);
            continue;
        }
        if (!j[field].is_string()) r.malformed("/" + field, "must be a string, or null to clear the key");
        key = j[field].get<std::string>();
        if (!key.empty()) check_key(r, field, key, "/" + field);
    }
    check_key_pair(r, out, "");
    keys = out;
}

target::subsystem_config parse_subsystem(const json& s, const std::string& p, const std::string& origin,
                                         warning_list& warnings, const std::string* key_file_dir,
                                         std::vector<key_file_ref>* key_files) {
    reader r(origin);
    r.object_with(s, p, {"nqn", "serial", "model", "allow_any_host", "hosts", "namespaces"});
    target::subsystem_config sc;
    sc.nqn = r.string(s, "nqn", p, true);
    if (std::string why = nqn_problem(sc.nqn); !why.empty()) r.fail(p + "/nqn", "'" + sc.nqn + "': " + why);
    if (sc.nqn == "nqn.2014-08.org.nvmexpress.discovery") r.fail(p + "/nqn", "the discovery NQN is reserved");
    if (!nqn_in_spec_form(sc.nqn))
        warnings.push_back(p + "/nqn: '" + sc.nqn +
                           "' is not in the spec's form (nqn.yyyy-mm.reverse.domain:name or "
                           "nqn.2014-08.org.nvmexpress:uuid:UUID); served anyway");
    sc.serial = r.string(s, "serial", p, false);
    if (sc.serial.size() > 20) r.fail(p + "/serial", "at most 20 characters");
    sc.model = r.string(s, "model", p, false, "ferry");
    if (sc.model.size() > 40) r.fail(p + "/model", "at most 40 characters");
    sc.allow_any_host = r.boolean(s, "allow_any_host", p, false);
    const json& hosts = r.array(s, "hosts", p, false);
    std::set<std::string> seen_hosts;
    for (size_t h = 0; h < hosts.size(); ++h) {
        const std::string hp = p + "/hosts/" + std::to_string(h);
        host_entry e = parse_host(hosts[h], hp, origin, key_file_dir);
        sc.hosts.push_back(e.nqn);
        if (!seen_hosts.insert(e.nqn).second) r.fail(hp, "duplicate host " + e.nqn);
        if (!e.keys.empty()) sc.keys[e.nqn] = e.keys;
        if (key_files)
            for (const auto& [field, file] : e.key_files) key_files->push_back({sc.nqn, e.nqn, field, file});
    }
    // Keys belong to the hosts on the list; allow_any_host lets every other NQN in without any.
    if (sc.allow_any_host && !sc.keys.empty())
        warnings.push_back((p.empty() ? "" : p + ": ") +
                           "\"allow_any_host\" is true: hosts not on the list connect without keys (only the "
                           "listed hosts with keys must authenticate or use TLS)");
    if (!sc.allow_any_host && sc.hosts.empty())
        warnings.push_back((p.empty() ? "" : p + ": ") +  // a request body: no JSON path
                           "no host can connect yet: \"allow_any_host\" is false and \"hosts\" is empty");
    const json& nss = r.array(s, "namespaces", p, false);
    std::set<uint32_t> nsids;
    for (size_t n = 0; n < nss.size(); ++n) {
        const std::string np = p + "/namespaces/" + std::to_string(n);
        sc.namespaces.push_back(parse_namespace(nss[n], np, origin, static_cast<uint32_t>(n + 1)));
        const uint32_t nsid = sc.namespaces.back().nsid;
        if (!nsids.insert(nsid).second) r.fail(np + "/nsid", "duplicate NSID " + std::to_string(nsid));
    }
    return sc;
}

uint32_t parse_ana_group(const std::string& text) {
    if (text.empty() || text.size() > 3 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return 0;
    const unsigned long g = std::stoul(text);
    return target::valid_ana_group(static_cast<uint32_t>(g)) ? static_cast<uint32_t>(g) : 0;  // at most 3 digits
}

std::string ana_state_error(const std::string& name) {
    std::string list;
    for (const auto& [s, n] : target::ana_state_names)
        if (target::ana_state_settable(s)) list += (list.empty() ? "" : ", ") + std::string(n);
    return "'" + name + "' is not an ANA state (" + list + ")";
}

target::listener_config parse_listener(const json& l, const std::string& p, const std::string& origin) {
    reader r(origin);
    r.object_with(l, p, {"transport", "address", "port", "tls", "ana"});
    std::string tr = r.string(l, "transport", p, false, "tcp");
    if (tr != "tcp") r.fail(p + "/transport", "'" + tr + "' is not supported (only \"tcp\")");
    target::listener_config lc;
    lc.address = r.string(l, "address", p, true);
    if (lc.address.empty()) r.fail(p + "/address", "must not be empty");
    lc.port = static_cast<uint16_t>(r.unsigned_int(l, "port", p, false, 4420, 1, 65535));
    const std::string tls = r.string(l, "tls", p, false, "none");
    using transport::tls_mode;
    std::optional<tls_mode> mode;  // the names are transport::to_string's
    for (tls_mode m : {tls_mode::none, tls_mode::allowed, tls_mode::required})
        if (tls == transport::to_string(m)) mode = m;
    if (!mode) r.fail(p + "/tls", "'" + tls + "' is not a TLS mode (none, allowed, required)");
    lc.tls = *mode;
    if (l.contains("ana")) {
        const json& ana = l["ana"];
        if (!ana.is_object()) r.malformed(p + "/ana", "must be an object of ANA group -> state");
        for (auto it = ana.begin(); it != ana.end(); ++it) {
            const std::string gp = p + "/ana/" + it.key();
            const uint32_t group = parse_ana_group(it.key());
            if (!group)
                r.fail(gp,
                       "'" + it.key() + "' is not an ANA group (1.." + std::to_string(target::max_ana_groups) + ")");
            if (!it.value().is_string()) r.malformed(gp, "must be a string");
            const auto state = target::parse_ana_state(it.value().get<std::string>());
            if (!state) r.fail(gp, ana_state_error(it.value().get<std::string>()));
            if (!target::ana_state_settable(*state))
                r.fail(gp, "listener " + lc.address + ":" + std::to_string(lc.port) + " ANA group " +
                               std::to_string(group) + ": " + std::string(target::ana_change_refusal));
            if (*state != target::ana_state::optimized) lc.ana[group] = *state;
        }
    }
    return lc;
}

target::referral_config parse_referral(const json& j, const std::string& p, const std::string& origin) {
    reader r(origin);
    r.object_with(j, p, {"address", "port"});
    target::referral_config rc;
    rc.address = r.string(j, "address", p, true);
    if (rc.address.empty()) r.fail(p + "/address", "must not be empty");
    rc.port = static_cast<uint16_t>(r.unsigned_int(j, "port", p, false, 8009, 1, 65535));
    return rc;
}

management_config parse_management(const json& j, const std::string& p, const std::string& origin) {
    reader r(origin);
    r.object_with(j, p, {"enabled", "address", "port", "token_file", "tls_cert", "tls_key", "metrics_without_token"});
    management_config m;
    m.enabled = r.boolean(j, "enabled", p, true);
    m.address = r.string(j, "address", p, false, m.address);
    if (m.address.empty()) r.fail(p + "/address", "must not be empty");
    m.port = static_cast<uint16_t>(r.unsigned_int(j, "port", p, false, m.port, 0, 65535));
    m.token_file = r.string(j, "token_file", p, false);
    m.tls_cert = r.string(j, "tls_cert", p, false);
    m.tls_key = r.string(j, "tls_key", p, false);
    if (m.tls_cert.empty() != m.tls_key.empty())
        r.fail(p + (m.tls_cert.empty() ? "/tls_cert" : "/tls_key"), "HTTPS needs both tls_cert and tls_key");
    m.metrics_without_token = r.boolean(j, "metrics_without_token", p, false);
    return m;
}

config_file parse_config_file(const std::string& text, const std::string& origin) {
    reader r(origin);
    const json root = parse_json_text(text, origin);
    r.object_with(root, "", {"listeners", "subsystems", "referrals", "management"});

    config_file out;
    const size_t slash = origin.rfind('/');
    const std::string key_dir = slash == std::string::npos ? "." : slash == 0 ? "/" : origin.substr(0, slash);
    if (root.contains("management")) out.management = parse_management(root["management"], "/management", origin);
    target::target_config& cfg = out.target;
    const json& listeners = r.array(root, "listeners", "", false);
    if (listeners.empty() && !out.management.enabled)
        r.fail("/listeners", "at least one listener is needed (or the management API, to add them)");
    std::set<std::pair<std::string, uint16_t>> seen_listeners;
    for (size_t i = 0; i < listeners.size(); ++i) {
        const std::string p = "/listeners/" + std::to_string(i);
        cfg.listeners.push_back(parse_listener(listeners[i], p, origin));
        if (!seen_listeners.insert({cfg.listeners.back().address, cfg.listeners.back().port}).second)
            r.fail(p, "duplicate listener");
    }
    const json& subsystems = r.array(root, "subsystems", "", false);
    std::set<std::string> seen_nqns;
    for (size_t i = 0; i < subsystems.size(); ++i) {
        const std::string p = "/subsystems/" + std::to_string(i);
        cfg.subsystems.push_back(parse_subsystem(subsystems[i], p, origin, out.warnings, &key_dir, &out.key_files));
        if (subsystems[i].contains("hosts"))
            for (const auto& h : subsystems[i]["hosts"])
                for (const char* f : host_key_fields) out.inline_keys |= h.is_object() && h.contains(f);
        if (!seen_nqns.insert(cfg.subsystems.back().nqn).second)
            r.fail(p + "/nqn", "duplicate subsystem " + cfg.subsystems.back().nqn);
    }
    const json& referrals = r.array(root, "referrals", "", false);
    std::set<std::pair<std::string, uint16_t>> seen_referrals;
    for (size_t i = 0; i < referrals.size(); ++i) {
        const std::string p = "/referrals/" + std::to_string(i);
        cfg.referrals.push_back(parse_referral(referrals[i], p, origin));
        if (!seen_referrals.insert({cfg.referrals.back().address, cfg.referrals.back().port}).second)
            r.fail(p, "duplicate referral");
    }
    return out;
}

target::target_config parse_config(const std::string& text, const std::string& origin) {
    return parse_config_file(text, origin).target;
}

namespace {
// Sizes in the largest unit that states them exactly.
json size_json(uint64_t bytes) {
    static const std::pair<uint64_t, const char*> units[] = {
        {1ull << 40, "TiB"}, {1ull << 30, "GiB"}, {1ull << 20, "MiB"}, {1ull << 10, "KiB"}};
    for (const auto& [mult, name] : units)
        if (bytes >= mult && bytes % mult == 0) return std::to_string(bytes / mult) + name;
    return bytes;
}
}  // namespace

json to_json(const target::namespace_config& n) {
    json j;
    j["nsid"] = n.nsid;
    switch (n.backend) {
        case target::backend_kind::ram:
            j["backend"] = "ram";
            break;
        case target::backend_kind::null:
            j["backend"] = "null";
            break;
        case target::backend_kind::file:
            j["backend"] = "file";
            break;
        case target::backend_kind::pcie:
            j["backend"] = "pcie";
            break;
        case target::backend_kind::rbd:
            j["backend"] = "rbd";
            break;
    }
    if (n.backend == target::backend_kind::pcie) {
        j["pcie_address"] = n.pcie_address;
        j["pcie_nsid"] = n.pcie_nsid;
    } else {
        if (n.size_bytes) j["size"] = size_json(n.size_bytes);
        j["block_size"] = n.block_size;
    }
    if (n.backend == target::backend_kind::file) j["path"] = n.path;
    if (n.backend == target::backend_kind::rbd) {
        j["pool"] = n.rbd.pool;
        j["image"] = n.rbd.image;
        if (!n.rbd.ceph_conf.empty()) j["ceph_conf"] = n.rbd.ceph_conf;
        j["client"] = n.rbd.client.empty() ? "admin" : n.rbd.client;
    }
    if (n.uuid) j["uuid"] = uuid_text(*n.uuid);
    if (n.nguid) j["nguid"] = hex_text(*n.nguid);
    if (n.eui64) j["eui64"] = hex_text(*n.eui64);
    j["ana_group"] = n.ana_group;
    return j;
}

json host_view(const std::string& nqn, const target::host_keys& keys) {
    json j = {{"nqn", nqn}};
    for (const char* f : host_key_fields) j[std::string(f) + "_set"] = !key_field(keys, f).empty();
    return j;
}

json to_json(const target::subsystem_config& s, const key_file_map* key_files) {
    json j;
    j["nqn"] = s.nqn;
    if (!s.serial.empty()) j["serial"] = s.serial;
    j["model"] = s.model;
    j["allow_any_host"] = s.allow_any_host;
    j["hosts"] = json::array();
    for (const auto& h : s.hosts) {
        auto k = s.keys.find(h);
        const target::host_keys keys = k == s.keys.end() ? target::host_keys{} : k->second;
        if (!key_files) {
            j["hosts"].push_back(host_view(h, keys));
            continue;
        }
        json e = {{"nqn", h}};
        for (const char* f : host_key_fields) {
            if (key_field(keys, f).empty()) continue;
            auto files = key_files->find({s.nqn, h});
            auto file = files == key_files->end() ? std::map<std::string, std::string>::const_iterator{}
                                                  : files->second.find(f);
            if (files == key_files->end() || file == files->second.end())
                throw std::logic_error("no key file for " + std::string(f) + " of host " + h + " of " + s.nqn);
            e[std::string(f) + "_file"] = file->second;
        }
        j["hosts"].push_back(std::move(e));
    }
    j["namespaces"] = json::array();
    for (const auto& n : s.namespaces) j["namespaces"].push_back(to_json(n));
    return j;
}

json to_json(const target::listener_config& l) {
    json j = {{"transport", "tcp"}, {"address", l.address}, {"port", l.port}, {"tls", transport::to_string(l.tls)}};
    j["ana"] = json::object();  // groups not listed are optimized
    for (const auto& [group, state] : l.ana) j["ana"][std::to_string(group)] = target::ana_state_name(state);
    return j;
}

json to_json(const target::referral_config& r) {
    return {{"address", r.address}, {"port", r.port}};
}

json to_json(const management_config& m) {
    json j;
    j["enabled"] = m.enabled;
    j["address"] = m.address;
    j["port"] = m.port;
    if (!m.token_file.empty()) j["token_file"] = m.token_file;
    if (!m.tls_cert.empty()) j["tls_cert"] = m.tls_cert;
    if (!m.tls_key.empty()) j["tls_key"] = m.tls_key;
    j["metrics_without_token"] = m.metrics_without_token;
    return j;
}

namespace {
json config_json_with(const target::target_config& cfg, const management_config& m, const key_file_map* key_files) {
    json j;
    j["listeners"] = json::array();
    for (const auto& l : cfg.listeners) j["listeners"].push_back(to_json(l));
    j["subsystems"] = json::array();
    for (const auto& s : cfg.subsystems) j["subsystems"].push_back(to_json(s, key_files));
    j["referrals"] = json::array();
    for (const auto& r : cfg.referrals) j["referrals"].push_back(to_json(r));
    j["management"] = to_json(m);
    return j;
}
}  // namespace

json config_json(const target::target_config& cfg, const management_config& m) {
    return config_json_with(cfg, m, nullptr);
}

std::string write_config(const target::target_config& cfg, const management_config& m, const key_file_map& key_files) {
    return config_json_with(cfg, m, &key_files).dump(2) + "\n";
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
            throw config_error(ek::invalid, origin,
                               "/subsystems/" + std::to_string(i) + "/namespaces/" + std::to_string(n) + "/size",
                               what + " cannot be served: ferry may use " + std::to_string(budget.bytes) + " bytes (" +
                                   mib(budget.bytes) + ") for RAM namespaces (" + budget.origin + ")");
        }
    }
}

config_file load_config(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw config_error(ek::invalid, path, "", std::string("cannot open: ") + std::strerror(errno));
    std::stringstream ss;
    ss << f.rdbuf();
    return parse_config_file(ss.str(), path);
}

target::target_config load_config_file(const std::string& path) {
    return load_config(path).target;
}

}  // namespace ferry::mgmt
