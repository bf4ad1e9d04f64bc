#include "tools/ferryctl/bodies.hh"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "tools/ferryctl/url.hh"

namespace ferry::ferryctl {

using json = nlohmann::json;

json size_value(const std::string& size) {
    if (!size.empty() && size.size() <= 19 &&
        std::all_of(size.begin(), size.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::stoull(size);
    return size;
}

json namespace_body(const namespace_args& a) {
    json body = json::object();
    if (a.nsid) body["nsid"] = *a.nsid;
    body["backend"] = a.backend.empty() ? "ram" : a.backend;
    if (a.size) body["size"] = size_value(*a.size);
    if (a.block_size) body["block_size"] = *a.block_size;
    if (a.uuid) body["uuid"] = *a.uuid;
    if (a.nguid) body["nguid"] = *a.nguid;
    if (a.eui64) body["eui64"] = *a.eui64;
    if (a.path) body["path"] = *a.path;
    if (a.pcie_address) body["pcie_address"] = *a.pcie_address;
    if (a.pcie_nsid) body["pcie_nsid"] = *a.pcie_nsid;
    if (a.pool) body["pool"] = *a.pool;
    if (a.image) body["image"] = *a.image;
    if (a.ceph_conf) body["ceph_conf"] = *a.ceph_conf;
    if (a.client) body["client"] = *a.client;
    if (a.ana_group) body["ana_group"] = *a.ana_group;
    return body;
}

std::string listener_segment(const std::string& text) {
    std::string address = text;
    unsigned long port = 4420;
    const size_t colon = text.rfind(':');
    const bool bracketed = !text.empty() && text[0] == '[';
    // A bare IPv6 address has several colons and no port: the whole text is the address.
    if (colon != std::string::npos && (bracketed || text.find(':') == colon)) {
        const std::string p = text.substr(colon + 1);
        if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos ||
            (port = std::stoul(p)) == 0 || port > 65535)
            throw usage_error("--listener " + text + ": '" + p + "' is not a port (1..65535)");
        address = text.substr(0, colon);
    }
    if (bracketed) {
        if (address.size() < 3 || address.back() != ']') throw usage_error("--listener " + text + ": unbalanced [");
        address = address.substr(1, address.size() - 2);
    }
    if (address.empty()) throw usage_error("--listener " + text + ": no address");
    return endpoint_segment(address, static_cast<uint16_t>(port));
}

json subsystem_body(const subsystem_args& a) {
    json body = {{"nqn", a.nqn}, {"allow_any_host", a.allow_any_host}};
    if (a.serial) body["serial"] = *a.serial;
    if (a.model) body["model"] = *a.model;
    if (!a.hosts.empty()) {
        json hosts = json::array();
        for (const auto& h : a.hosts) hosts.push_back({{"nqn", h}});
        body["hosts"] = hosts;
    }
    return body;
}

json subsystem_patch_body(const subsystem_patch_args& a) {
    json body = json::object();
    if (a.allow_any_host) body["allow_any_host"] = *a.allow_any_host;
    if (a.model) body["model"] = *a.model;
    if (a.serial) body["serial"] = *a.serial;
    if (body.empty())
        throw usage_error("subsystem set: nothing to change (give --allow-any-host, --model or --serial)");
    return body;
}

json listener_body(const std::string& address, uint16_t port, const std::string& tls) {
    json j = {{"transport", "tcp"}, {"address", address}, {"port", port}};
    if (!tls.empty()) {
        if (tls != "none" && tls != "allowed" && tls != "required")
            throw usage_error("--tls: '" + tls + "' is not none, allowed or required");
        j["tls"] = tls;
    }
    return j;
}

std::string read_key_argument_file(const std::string& path, const std::string& option) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw usage_error(option + " " + path + ": cannot open: " + std::strerror(errno));
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (text.size() > 4096) throw usage_error(option + " " + path + ": larger than 4 KiB; not a key");
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    if (text.empty()) throw usage_error(option + " " + path + ": empty");
    return text;
}

namespace {
// The key an option pair gives, if any.
std::optional<std::string> key_of(const host_key_option& o, const host_key_args& a) {
    const std::string opt = o.option;
    if (a.*o.key && a.*o.file) throw usage_error("give " + opt + " or " + opt + "-file, not both");
    if (a.*o.file) return read_key_argument_file(*(a.*o.file), opt + "-file");
    return a.*o.key;
}
}  // namespace

json host_body(const std::string& hostnqn, const host_key_args& args) {
    json j = {{"nqn", hostnqn}};
    for (const auto& o : host_key_options) {
        if (args.*o.clear) throw usage_error(std::string("--clear-") + (o.option + 2) + " is for host set-keys");
        if (auto k = key_of(o, args)) j[o.field] = *k;
    }
    return j;
}

json host_keys_patch_body(const host_key_args& args) {
    json j = json::object();
    for (const auto& o : host_key_options) {
        const bool clear = args.*o.clear;
        auto k = key_of(o, args);
        if (k && clear) throw usage_error(std::string(o.option) + " and --clear-" + (o.option + 2) + " contradict");
        if (k) j[o.field] = *k;
        if (clear) j[o.field] = nullptr;
    }
    if (j.empty())
        throw usage_error(
            "nothing to change: give --dhchap-key, --dhchap-ctrl-key or --tls-psk (or their -file forms), or "
            "--clear-...");
    return j;
}

json referral_body(const std::string& address, uint16_t port) {
    return {{"address", address}, {"port", port}};
}

bool parse_bool(const std::string& text, const std::string& option) {
    std::string t = text;
    std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (t == "true" || t == "yes" || t == "1" || t == "on") return true;
    if (t == "false" || t == "no" || t == "0" || t == "off") return false;
    throw usage_error(option + ": '" + text + "' is not true or false");
}

void throw_api_error(const std::string& method, const std::string& path, const http_response& res) {
    std::string msg = method + " " + path + ": HTTP " + std::to_string(res.status);
    if (!res.reason.empty()) msg += " " + res.reason;
    json body = json::parse(res.body, nullptr, false);
    if (body.is_object() && body.contains("error") && body["error"].is_string()) {
        msg += ": " + body["error"].get<std::string>();
        if (body.contains("path") && body["path"].is_string()) msg += " (at " + body["path"].get<std::string>() + ")";
        if (body.contains("reasons") && body["reasons"].is_array())
            for (const auto& r : body["reasons"])
                if (r.is_string()) msg += "\n  " + r.get<std::string>();
    } else if (!res.body.empty()) {
        std::string text = res.body.substr(0, 500);
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
        msg += ": " + text;
    }
    if (res.status == 401 || res.status == 403)
        throw auth_error(msg +
                         " (check --token-file / FERRY_TOKEN_FILE: the token is the content of ferryd's "
                         "management token_file)");
    throw api_refused(msg, res.status);
}

std::vector<std::string> response_warnings(const json& body) {
    std::vector<std::string> out;
    if (body.is_object() && body.contains("warnings") && body["warnings"].is_array())
        for (const auto& w : body["warnings"])
            if (w.is_string()) {
                std::string text = w.get<std::string>();
                if (text.starts_with(": ")) text.erase(0, 2);  // tolerated; ferryd sends body warnings without a path
                out.push_back(text);
            }
    return out;
}

}  // namespace ferry::ferryctl
