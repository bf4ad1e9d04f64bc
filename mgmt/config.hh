// JSON configuration of ferryd: one validator per object (subsystem, namespace, host, listener,
// referral, management) used by the --config file and by the REST API's request bodies, and
// the writer that turns the live state back into that file format.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "target/config.hh"

namespace ferry::mgmt {

// A configuration problem: what() is "ORIGIN: /json/path: what is wrong". `malformed`: not
// JSON, a wrong type, an unknown or missing key (HTTP 400); `invalid`: well-formed but not
// acceptable (a bad NQN, a size out of range, a duplicate: HTTP 422).
class config_error : public std::runtime_error {
public:
    enum class kind { malformed, invalid };
    config_error(kind k, const std::string& origin, std::string path, std::string reason)
        : std::runtime_error(origin + ": " + (path.empty() ? "" : path + ": ") + reason),
          error_kind(k),
          path(std::move(path)),
          reason(std::move(reason)) {}
    kind error_kind;
    std::string path;    // JSON pointer into the document ("" = the document or the file itself)
    std::string reason;  // without origin and path
};

// The "management" object: the REST API's settings.
struct management_config {
    bool enabled = true;
    std::string address = "127.0.0.1";
    uint16_t port = 8420;                // 0 = an ephemeral port (tests; ferryd logs the real one)
    std::string token_file;              // "" = "api-token" in the directory of the state file
    std::string tls_cert, tls_key;       // both set: HTTPS
    bool metrics_without_token = false;  // /metrics and /healthz without the bearer token
    bool operator==(const management_config&) const = default;
};

// What a configuration file holds.
struct config_file {
    target::target_config target;
    management_config management;
    std::vector<std::string> warnings;  // accepted but worth a log line ("/subsystems/0/nqn: ...")
};

// Warnings collected while validating: "PATH: message".
using warning_list = std::vector<std::string>;

// Parses and validates a whole file (comments allowed); `origin` names the source in errors.
config_file parse_config_file(const std::string& text, const std::string& origin);
config_file load_config(const std::string& path);
// The target part only (tests, tools).
target::target_config parse_config(const std::string& text, const std::string& origin);
target::target_config load_config_file(const std::string& path);

// One object each, as the file holds it and as the REST API takes it; `path` is the object's
// JSON pointer (errors and warnings are reported below it). Throw config_error.
// `default_nsid`: the NSID when the object has none (0 = let the target choose the lowest free).
target::subsystem_config parse_subsystem(const nlohmann::json& j, const std::string& path, const std::string& origin,
                                         warning_list& warnings);
target::namespace_config parse_namespace(const nlohmann::json& j, const std::string& path, const std::string& origin,
                                         uint32_t default_nsid);
// {"nqn": "..."} or, as older files have it, the NQN as a plain string.
std::string parse_host(const nlohmann::json& j, const std::string& path, const std::string& origin);
target::listener_config parse_listener(const nlohmann::json& j, const std::string& path, const std::string& origin);
target::referral_config parse_referral(const nlohmann::json& j, const std::string& path, const std::string& origin);
management_config parse_management(const nlohmann::json& j, const std::string& path, const std::string& origin);
// Parses a request body: malformed JSON is a config_error(malformed, path "").
nlohmann::json parse_json_text(const std::string& text, const std::string& origin);

// NQN rules: refused when empty, over 223 bytes, or holding spaces or control characters
// (returns why, or "" when acceptable).
std::string nqn_problem(const std::string& nqn);
// True for the spec's forms: "nqn.yyyy-mm.<reverse domain>..." or
// "nqn.2014-08.org.nvmexpress:uuid:<UUID>". Other NQNs (e.g. "testnqn") are served with a warning.
bool nqn_in_spec_form(const std::string& nqn);

// The writer: the objects in file form, every NSID, UUID and NGUID as the config holds them,
// so that parse_config_file(write_config(c, m)) gives back c and m.
nlohmann::json to_json(const target::subsystem_config& s);
nlohmann::json to_json(const target::namespace_config& n);
nlohmann::json to_json(const target::listener_config& l);
nlohmann::json to_json(const target::referral_config& r);
nlohmann::json to_json(const management_config& m);
nlohmann::json config_json(const target::target_config& cfg, const management_config& m);
std::string write_config(const target::target_config& cfg, const management_config& m);

// "0123abcd-..." <-> bytes; NGUID as 32 hex digits, EUI-64 as 16.
std::string uuid_text(const std::array<uint8_t, 16>& u);

// Memory that RAM namespaces may take, all together: a host can write every block of one.
struct ram_budget {
    uint64_t bytes = 0;
    std::string origin;  // how it was set, for the error: "--max-ram-mib 1024", "physical memory ..."
};
// The default: physical memory minus a reserve for the system (1/16 of it, at least 1 GiB)
// minus `pool_bytes` (the reactors' buffer pools).
ram_budget default_ram_budget(uint64_t pool_bytes);
// Throws config_error (invalid, "FILE: /subsystems/I/namespaces/J/size: ...") at the first RAM
// namespace that takes the sum of RAM namespaces beyond `budget`. `cfg` in the order of
// the file, as parse_config() returns it.
void check_ram_budget(const target::target_config& cfg, const ram_budget& budget, const std::string& origin);

// "1GiB", "512MiB", "4096" (bytes) -> bytes; throws std::invalid_argument.
uint64_t parse_size(const std::string& s);

}  // namespace ferry::mgmt
