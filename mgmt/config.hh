// JSON configuration of ferryd: one validator per object (subsystem, namespace, host, listener,
// referral, management) used by the --config file and by the REST API's request bodies, and
// the writer that turns the live state back into that file format.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
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

// The host key fields of a host object, in the order they are checked and written.
inline constexpr const char* host_key_fields[] = {"dhchap_key", "dhchap_ctrl_key", "tls_psk"};
// That field of `k` ("dhchap_key" -> k.dhchap_key); throws std::logic_error for another name.
std::string& key_field(target::host_keys& k, const std::string& field);
const std::string& key_field(const target::host_keys& k, const std::string& field);

// A key a configuration file gave by reference ("dhchap_key_file": "keys/x"): the path as
// resolved (relative paths are relative to the file's directory).
struct key_file_ref {
    std::string subnqn, hostnqn, field, path;
};

// Where the state file finds each host's keys: (subsystem NQN, host NQN) -> field -> path
// relative to the state file's directory ("keys/dhchap_key-0123abcd...").
using key_file_map = std::map<std::pair<std::string, std::string>, std::map<std::string, std::string>>;

// What a configuration file holds.
struct config_file {
    target::target_config target;
    management_config management;
    std::vector<std::string> warnings;    // accepted but worth a log line ("/subsystems/0/nqn: ...")
    std::vector<key_file_ref> key_files;  // the keys given by "*_file" fields
    bool inline_keys = false;             // some key was given in the file itself
};

// A host object: the NQN and its keys (empty = not set).
struct host_entry {
    std::string nqn;
    target::host_keys keys;
    std::map<std::string, std::string> key_files;  // field -> resolved path, for "*_file" fields
};

// Warnings collected while validating: "PATH: message".
using warning_list = std::vector<std::string>;

// Parses and validates a whole file (comments allowed); `origin` names the source in errors
// and its directory is where relative "*_file" key paths start.
config_file parse_config_file(const std::string& text, const std::string& origin);
config_file load_config(const std::string& path);
// The target part only (tests, tools).
target::target_config parse_config(const std::string& text, const std::string& origin);
target::target_config load_config_file(const std::string& path);

// One object each, as the file holds it and as the REST API takes it; `path` is the object's
// JSON pointer (errors and warnings are reported below it). Throw config_error.
// `default_nsid`: the NSID when the object has none (0 = let the target choose the lowest free).
// `key_file_dir`: where relative "*_file" key paths start; nullptr (request bodies) refuses
// "*_file" fields (the API reads no files for a client; ferryctl reads them itself).
// `key_files`: where the keys read from files are recorded (may be nullptr).
target::subsystem_config parse_subsystem(const nlohmann::json& j, const std::string& path, const std::string& origin,
                                         warning_list& warnings, const std::string* key_file_dir = nullptr,
                                         std::vector<key_file_ref>* key_files = nullptr);
target::namespace_config parse_namespace(const nlohmann::json& j, const std::string& path, const std::string& origin,
                                         uint32_t default_nsid);
// {"nqn": "...", "dhchap_key": ..., "dhchap_ctrl_key": ..., "tls_psk": ...} (each key inline,
// or "<field>_file": a path, only when `key_file_dir` is given) or, as older files have it, the
// NQN as a plain string. Every key is parsed (target::parse_dhchap_secret,
// transport::parse_psk_interchange); errors name the field and never quote a key.
host_entry parse_host(const nlohmann::json& j, const std::string& path, const std::string& origin,
                      const std::string* key_file_dir = nullptr);
// The body of PATCH /subsystems/{nqn}/hosts/{hostnqn} applied to `keys`: a key field set to a
// string replaces that key, null or "" clears it, an absent field keeps it. Checks the result
// (a controller key needs a host key).
void patch_host_keys(const nlohmann::json& j, const std::string& origin, target::host_keys& keys);
target::listener_config parse_listener(const nlohmann::json& j, const std::string& path, const std::string& origin);
// An ANA group id in text ("2"; a JSON key or a URL segment): 1..max_ana_groups, else 0.
uint32_t parse_ana_group(const std::string& text);
// Why `name` is not an ANA state, listing the ones there are.
std::string ana_state_error(const std::string& name);
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
// so that parse_config_file(write_config(c, m, files)) gives back c and m.
// Keys are never written: `key_files` nullptr (the API's views) says of each host whether each
// key is set ("dhchap_key_set": true, ...); otherwise each set key is written as its file
// reference ("dhchap_key_file": "keys/...") and a key without one is a std::logic_error.
nlohmann::json to_json(const target::subsystem_config& s, const key_file_map* key_files = nullptr);
// One host as the API shows it: {"nqn", "dhchap_key_set", "dhchap_ctrl_key_set", "tls_psk_set"}.
nlohmann::json host_view(const std::string& nqn, const target::host_keys& keys);
nlohmann::json to_json(const target::namespace_config& n);
nlohmann::json to_json(const target::listener_config& l);
nlohmann::json to_json(const target::referral_config& r);
nlohmann::json to_json(const management_config& m);
// GET /config: the API's view (keys: whether each is set).
nlohmann::json config_json(const target::target_config& cfg, const management_config& m);
// The state file: keys as file references.
std::string write_config(const target::target_config& cfg, const management_config& m,
                         const key_file_map& key_files = {});

// "0123abcd-..." <-> bytes; NGUID as 32 hex digits, EUI-64 as 16.
std::string uuid_text(const std::array<uint8_t, 16>& u);
// Two lower-case hex digits per byte.
std::string hex_text(std::span<const uint8_t> bytes);

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
