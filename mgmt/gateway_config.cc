// ferryd --gateway FILE: parsing and checks (built with or without librados).
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "mgmt/config.hh"
#include "mgmt/gateway_group.hh"
#include "target/config.hh"

namespace ferry::mgmt {

namespace {

using json = nlohmann::json;

[[noreturn]] void bad(config_error::kind k, const std::string& origin, const std::string& key, const std::string& why) {
    throw config_error(k, origin, key.empty() ? "" : "/" + key, why);
}

std::string text_field(const json& j, const std::string& origin, const std::string& key, bool required) {
    if (!j.contains(key)) {
        if (required) bad(config_error::kind::malformed, origin, key, "is required");
        return {};
    }
    if (!j[key].is_string()) bad(config_error::kind::malformed, origin, key, "must be a string");
    return j[key].get<std::string>();
}

uint64_t number_field(const json& j, const std::string& origin, const std::string& key, bool required, uint64_t min,
                      uint64_t max, uint64_t dflt) {
    if (!j.contains(key)) {
        if (required) bad(config_error::kind::malformed, origin, key, "is required");
        return dflt;
    }
    if (!j[key].is_number_unsigned()) bad(config_error::kind::malformed, origin, key, "must be a non-negative integer");
    const uint64_t v = j[key].get<uint64_t>();
    if (v < min || v > max)
        bad(config_error::kind::invalid, origin, key,
            std::to_string(v) + " is not in " + std::to_string(min) + ".." + std::to_string(max));
    return v;
}

// Names become OMAP keys and log words: keep them plain.
void check_name(const std::string& v, const std::string& origin, const std::string& key) {
    if (v.empty() || v.size() > 64) bad(config_error::kind::invalid, origin, key, "must be 1 to 64 characters");
    for (char c : v)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            bad(config_error::kind::invalid, origin, key,
                "'" + v + "': only letters, digits, '-', '_' and '.' are allowed");
}

}  // namespace

gateway_config parse_gateway_config(const std::string& text, const std::string& origin) {
    const json j = parse_json_text(text, origin);
    if (!j.is_object()) bad(config_error::kind::malformed, origin, "", "must be a JSON object");
    static const std::set<std::string> known = {"group",      "name",         "subsystem",    "ana_group",
                                                "cntlid_min", "cntlid_max",   "pool",         "ceph_conf",
                                                "client",     "heartbeat_ms", "dead_after_ms"};
    for (auto it = j.begin(); it != j.end(); ++it)
        if (!known.count(it.key())) bad(config_error::kind::malformed, origin, it.key(), "is not a gateway field");
    gateway_config c;
    c.group = text_field(j, origin, "group", true);
    check_name(c.group, origin, "group");
    c.name = text_field(j, origin, "name", true);
    check_name(c.name, origin, "name");
    c.subsystem = text_field(j, origin, "subsystem", true);
    if (const std::string why = nqn_problem(c.subsystem); !why.empty())
        bad(config_error::kind::invalid, origin, "subsystem", why);
    c.ana_group = static_cast<uint32_t>(number_field(j, origin, "ana_group", true, 1, target::max_ana_groups, 0));
    c.cntlid_min = static_cast<uint16_t>(number_field(j, origin, "cntlid_min", true, 1, 0xFFEF, 0));
    c.cntlid_max = static_cast<uint16_t>(number_field(j, origin, "cntlid_max", true, 1, 0xFFEF, 0));
    if (c.cntlid_min > c.cntlid_max) bad(config_error::kind::invalid, origin, "cntlid_max", "is below cntlid_min");
    c.pool = text_field(j, origin, "pool", true);
    if (c.pool.empty()) bad(config_error::kind::invalid, origin, "pool", "must not be empty");
    c.ceph_conf = text_field(j, origin, "ceph_conf", false);
    if (j.contains("client")) c.client = text_field(j, origin, "client", false);
    if (c.client.empty()) bad(config_error::kind::invalid, origin, "client", "must not be empty");
    c.heartbeat_ms = static_cast<unsigned>(number_field(j, origin, "heartbeat_ms", false, 100, 60'000, 1000));
    c.dead_after_ms = static_cast<unsigned>(number_field(j, origin, "dead_after_ms", false, 500, 600'000, 4000));
    if (c.dead_after_ms < 2 * c.heartbeat_ms)
        bad(config_error::kind::invalid, origin, "dead_after_ms",
            "must be at least twice heartbeat_ms (a peer misses one beat without being dead)");
    return c;
}

gateway_config load_gateway_config(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw config_error(config_error::kind::invalid, path, "", "cannot read the file");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_gateway_config(ss.str(), path);
}

}  // namespace ferry::mgmt
