#include "tools/ferryctl/render.hh"

#include <algorithm>
#include <cstdio>
#include <map>

namespace ferry::ferryctl {

using json = nlohmann::json;

namespace {

std::string value_text(const json& v) {
    if (v.is_null()) return "-";
    if (v.is_string()) return v.get<std::string>().empty() ? "-" : v.get<std::string>();
    if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
    return v.dump();
}

const json& field(const json& object, const std::string& key) {
    static const json null_value;
    if (!object.is_object()) return null_value;
    auto it = object.find(key);
    return it == object.end() ? null_value : *it;
}

size_t count_of(const json& object, const std::string& key) {
    const json& v = field(object, key);
    return v.is_array() ? v.size() : 0;
}

std::string host_nqn(const json& host) {
    if (host.is_string()) return host.get<std::string>();
    return cell(host, "nqn");
}

// "set" or "-" for a host's "<field>_set" (the API never gives the key itself).
std::string key_state(const json& host, const std::string& key_name) {
    const json& v = field(host, key_name + "_set");
    return v.is_boolean() && v.get<bool>() ? "set" : "-";
}

// "nqn.h (keys: dhchap_key, tls_psk)" or the NQN alone.
std::string host_summary(const json& host) {
    std::string keys;
    for (const char* f : {"dhchap_key", "dhchap_ctrl_key", "tls_psk"})
        if (key_state(host, f) == "set") keys += (keys.empty() ? "" : ", ") + std::string(f);
    return host_nqn(host) + (keys.empty() ? "" : " (keys: " + keys + ")");
}

std::string hex16(const json& v) {
    if (!v.is_number_unsigned() && !v.is_number_integer()) return value_text(v);
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04x", static_cast<unsigned>(v.get<int64_t>() & 0xffff));
    return buf;
}

std::string size_text(const json& v) {
    if (v.is_number_unsigned() || v.is_number_integer()) return format_bytes(v.get<uint64_t>());
    return value_text(v);
}

std::string namespace_source(const json& ns) {
    std::string backend = cell(ns, "backend");
    if (backend == "file") return cell(ns, "path");
    if (backend == "pcie") return cell(ns, "pcie_address") + " nsid " + cell(ns, "pcie_nsid");
    if (backend == "rbd") return cell(ns, "pool") + "/" + cell(ns, "image");
    return "-";
}

std::string queues_text(const json& queues) {
    if (!queues.is_array() || queues.empty()) return "-";
    std::string out;
    for (const auto& q : queues) {
        if (!out.empty()) out += ' ';
        out += cell(q, "qid") + ":" + cell(q, "depth") + "@r" + cell(q, "reactor");
    }
    return out;
}

std::vector<std::string> controller_row(const json& c) {
    const json& kato = field(c, "kato_ms");
    return {cell(c, "cntlid"),
            cell(c, "hostnqn"),
            cell(c, "hostid"),
            cell(c, "peer"),
            kato.is_number() ? std::to_string(kato.get<uint64_t>()) + " ms" : "-",
            queues_text(field(c, "queues"))};
}

// The key naming an array element ("" if none): it is part of the name, not a counter.
std::string element_key(const json& element) {
    for (const char* key : {"nqn", "nsid", "cntlid", "qid", "id", "name", "address"}) {
        const json& v = field(element, key);
        if (v.is_string() || v.is_number()) return key;
    }
    return "";
}

void flatten(const json& v, const std::string& name, std::map<std::string, double>& out,
             std::vector<std::string>& order, const std::string& skip_key = "") {
    if (v.is_number()) {
        if (!out.count(name)) order.push_back(name);
        out[name] = v.get<double>();
    } else if (v.is_object()) {
        for (auto it = v.begin(); it != v.end(); ++it)
            if (it.key() != skip_key) flatten(it.value(), name.empty() ? it.key() : name + "." + it.key(), out, order);
    } else if (v.is_array()) {
        if (std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number(); })) return;
        for (size_t i = 0; i < v.size(); ++i) {
            std::string key = element_key(v[i]);
            std::string element = key.empty() ? std::to_string(i) : value_text(v[i][key]);
            flatten(v[i], name + "[" + element + "]", out, order, key);
        }
    }
}

std::string number_text(double v) {
    char buf[64];
    if (v == static_cast<double>(static_cast<int64_t>(v)))
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    else
        std::snprintf(buf, sizeof buf, "%.3f", v);
    return buf;
}

}  // namespace

std::string format_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> width(header.size());
    for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
    for (const auto& row : rows)
        for (size_t i = 0; i < row.size() && i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
    std::string out;
    auto line = [&](const std::vector<std::string>& cells) {
        std::string l;
        for (size_t i = 0; i < width.size(); ++i) {
            const std::string& c = i < cells.size() ? cells[i] : std::string();
            l += c;
            if (i + 1 < width.size()) l += std::string(width[i] - c.size() + 2, ' ');
        }
        while (!l.empty() && l.back() == ' ') l.pop_back();
        out += l + "\n";
    };
    line(header);
    for (const auto& row : rows) line(row);
    return out;
}

std::string cell(const json& object, const std::string& key) {
    return value_text(field(object, key));
}

std::string format_bytes(uint64_t bytes) {
    static const char* units[] = {"TiB", "GiB", "MiB", "KiB"};
    for (int i = 0; i < 4; ++i) {
        uint64_t unit = 1ull << (10 * (4 - i));
        if (bytes >= unit && bytes % unit == 0) return std::to_string(bytes / unit) + " " + units[i];
    }
    return std::to_string(bytes) + " B";
}

std::string subsystems_table(const json& subsystems) {
    std::vector<std::vector<std::string>> rows;
    if (subsystems.is_array())
        for (const auto& s : subsystems) {
            bool any = field(s, "allow_any_host").is_boolean() && field(s, "allow_any_host").get<bool>();
            rows.push_back({cell(s, "nqn"), any ? "any" : std::to_string(count_of(s, "hosts")),
                            std::to_string(count_of(s, "namespaces")), std::to_string(count_of(s, "controllers")),
                            cell(s, "model"), cell(s, "serial")});
        }
    return format_table({"NQN", "HOSTS", "NAMESPACES", "CONTROLLERS", "MODEL", "SERIAL"}, rows);
}

std::string namespaces_table(const json& namespaces) {
    std::vector<std::vector<std::string>> rows;
    if (namespaces.is_array())
        for (const auto& ns : namespaces)
            rows.push_back({cell(ns, "nsid"), cell(ns, "backend"), size_text(field(ns, "size")), cell(ns, "block_size"),
                            cell(ns, "uuid"), namespace_source(ns)});
    return format_table({"NSID", "BACKEND", "SIZE", "BLOCK", "UUID", "SOURCE"}, rows);
}

std::string subsystem_text(const json& s) {
    std::string hosts;
    if (field(s, "hosts").is_array())
        for (const auto& h : field(s, "hosts")) hosts += (hosts.empty() ? "" : ", ") + host_summary(h);
    std::string out = format_table({"nqn:", cell(s, "nqn")}, {{"serial:", cell(s, "serial")},
                                                              {"model:", cell(s, "model")},
                                                              {"allow any host:", cell(s, "allow_any_host")},
                                                              {"hosts:", hosts.empty() ? "-" : hosts}});
    for (const auto& w : field(s, "warnings")) out += "warning: " + value_text(w) + "\n";
    out += "\nnamespaces:\n" + namespaces_table(field(s, "namespaces"));
    out += "\ncontrollers:\n" + controllers_table(field(s, "controllers"));
    return out;
}

std::string controllers_table(const json& controllers, bool with_subsystem) {
    std::vector<std::vector<std::string>> rows;
    if (controllers.is_array())
        for (const auto& c : controllers) {
            auto row = controller_row(c);
            if (with_subsystem) row.insert(row.begin(), cell(c, "subsystem"));
            rows.push_back(row);
        }
    std::vector<std::string> header = {"CNTLID", "HOSTNQN", "HOSTID", "PEER", "KATO", "QUEUES (QID:DEPTH@REACTOR)"};
    if (with_subsystem) header.insert(header.begin(), "SUBSYSTEM");
    return format_table(header, rows);
}

std::string listeners_table(const json& listeners) {
    std::vector<std::vector<std::string>> rows;
    if (listeners.is_array())
        for (const auto& l : listeners)
            rows.push_back({cell(l, "transport"), cell(l, "address"), cell(l, "port"), cell(l, "tls")});
    return format_table({"TRANSPORT", "ADDRESS", "PORT", "TLS"}, rows);
}

namespace {
// Calls take(group, state) for each "<group>": "<state>" entry of an ANA object; keys that are
// not group numbers, and states that are not strings, are skipped.
template <typename Take>
void each_group_state(const json& ana, Take&& take) {
    if (!ana.is_object()) return;
    for (auto it = ana.begin(); it != ana.end(); ++it)
        if (it.value().is_string() && !it.key().empty() && it.key().size() < 6 &&
            it.key().find_first_not_of("0123456789") == std::string::npos)
            take(std::stoull(it.key()), it.value().get<std::string>());
}
}  // namespace

json ana_view(const json& listeners, const json& subsystems) {
    std::map<uint64_t, std::vector<std::string>> members;  // group -> "NQN/NSID"
    if (subsystems.is_array())
        for (const auto& s : subsystems)
            if (field(s, "namespaces").is_array())
                for (const auto& n : field(s, "namespaces")) {
                    const json& g = field(n, "ana_group");
                    members[g.is_number_unsigned() ? g.get<uint64_t>() : 1].push_back(cell(s, "nqn") + "/" +
                                                                                      cell(n, "nsid"));
                }
    json view = json::array();
    if (!listeners.is_array()) return view;
    for (const auto& l : listeners) {
        std::map<uint64_t, std::string> states;
        for (const auto& [g, unused] : members) states[g] = "optimized";
        each_group_state(field(l, "ana"), [&](uint64_t g, const std::string& state) { states[g] = state; });
        // Under a gateway group its live states win: the group, not the configuration, sets them.
        std::map<uint64_t, std::string> set_by;
        if (const json& m = field(l, "ana_managed"); m.is_object())
            each_group_state(field(m, "groups"), [&](uint64_t g, const std::string& state) {
                states[g] = state;
                set_by[g] = cell(m, "by");
            });
        const std::string where = cell(l, "address").find(':') != std::string::npos
                                      ? "[" + cell(l, "address") + "]:" + cell(l, "port")
                                      : cell(l, "address") + ":" + cell(l, "port");
        for (const auto& [g, state] : states) {
            json ns = json::array();
            if (auto m = members.find(g); m != members.end())
                for (const auto& x : m->second) ns.push_back(x);
            json row = {{"listener", where}, {"group", g}, {"state", state}, {"namespaces", ns}};
            if (auto b = set_by.find(g); b != set_by.end()) row["set_by"] = b->second;
            view.push_back(std::move(row));
        }
    }
    return view;
}

std::string ana_table(const json& view) {
    std::vector<std::vector<std::string>> rows;
    if (view.is_array())
        for (const auto& r : view) {
            std::string ns;
            for (const auto& x : field(r, "namespaces")) ns += (ns.empty() ? "" : " ") + x.get<std::string>();
            std::string state = cell(r, "state");
            if (field(r, "set_by").is_string()) state += " (" + cell(r, "set_by") + ")";
            rows.push_back({cell(r, "listener"), cell(r, "group"), state, ns.empty() ? "-" : ns});
        }
    return format_table({"LISTENER", "GROUP", "STATE", "NAMESPACES"}, rows);
}

std::string hosts_table(const json& hosts) {
    std::vector<std::vector<std::string>> rows;
    if (hosts.is_array())
        for (const auto& h : hosts)
            rows.push_back(
                {host_nqn(h), key_state(h, "dhchap_key"), key_state(h, "dhchap_ctrl_key"), key_state(h, "tls_psk")});
    return format_table({"HOSTNQN", "DHCHAP_KEY", "DHCHAP_CTRL_KEY", "TLS_PSK"}, rows);
}

std::string referrals_table(const json& referrals) {
    std::vector<std::vector<std::string>> rows;
    if (referrals.is_array())
        for (const auto& r : referrals) rows.push_back({cell(r, "address"), cell(r, "port")});
    return format_table({"ADDRESS", "PORT"}, rows);
}

std::string devices_table(const json& devices) {
    std::vector<std::vector<std::string>> rows;
    if (devices.is_array())
        for (const auto& d : devices) {
            std::string blocks;
            if (field(d, "block_devices").is_array())
                for (const auto& b : field(d, "block_devices")) blocks += (blocks.empty() ? "" : ",") + value_text(b);
            rows.push_back({cell(d, "address"), hex16(field(d, "vendor")) + ":" + hex16(field(d, "device")),
                            cell(d, "driver"), cell(d, "iommu_group"), cell(d, "numa_node"),
                            blocks.empty() ? "-" : blocks, cell(d, "in_use_by_ferry")});
        }
    return format_table({"ADDRESS", "VENDOR:DEVICE", "DRIVER", "IOMMU_GROUP", "NUMA", "BLOCK_DEVICES", "FERRY"}, rows);
}

std::string stats_text(const json& stats, const std::optional<json>& previous, double seconds) {
    std::map<std::string, double> now, before;
    std::vector<std::string> order, unused;
    flatten(stats, "", now, order);
    bool rates = previous && seconds > 0;
    if (rates) flatten(*previous, "", before, unused);
    std::vector<std::vector<std::string>> rows;
    for (const auto& name : order) {
        std::vector<std::string> row = {name, number_text(now[name])};
        if (rates) {
            auto it = before.find(name);
            row.push_back(it == before.end() ? "-" : number_text((now[name] - it->second) / seconds));
        }
        rows.push_back(row);
    }
    if (rates) return format_table({"COUNTER", "VALUE", "PER_SECOND"}, rows);
    return format_table({"COUNTER", "VALUE"}, rows);
}

}  // namespace ferry::ferryctl
