// Command line arguments to the JSON bodies of the management API (the config file's objects,
// see mgmt/README.md), and the API's answers to what ferryctl prints and its exit status.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tools/ferryctl/http_client.hh"

namespace ferry::ferryctl {

// ferryctl's exit status; documented in --help and tools/ferryctl/README.md.
enum exit_code : int {
    exit_ok = 0,
    exit_api_refused = 1,  // the API answered with an error (4xx other than 401/403, 5xx)
    exit_usage = 2,        // bad command line, option or URL
    exit_unreachable = 3,  // no answer: cannot resolve, connect, TLS, timeout, not HTTP
    exit_auth = 4,         // token file unreadable, or the API refused the token (401/403)
};

// The API said no. what() is the whole message ferryctl prints.
class api_refused : public std::runtime_error {
public:
    api_refused(const std::string& what, unsigned status) : std::runtime_error(what), status(status) {}
    unsigned status;
};

// "1GiB", "512MiB" stay text (the API parses units); plain digits become a number.
nlohmann::json size_value(const std::string& size);

struct namespace_args {
    std::optional<uint32_t> nsid;
    std::string backend;  // ram|null|file|pcie|rbd
    std::optional<std::string> size;
    std::optional<uint32_t> block_size;
    std::optional<std::string> uuid, nguid, eui64;
    std::optional<std::string> path;
    std::optional<std::string> pcie_address;
    std::optional<uint32_t> pcie_nsid;
    std::optional<std::string> pool, image, ceph_conf, client;  // rbd
    std::optional<uint32_t> ana_group;
};
// Only what was given: the API fills in defaults (lowest free NSID, derived UUID, ...).
nlohmann::json namespace_body(const namespace_args& args);

// The listener of `ferryctl ana set --listener`: "ADDRESS:PORT", "[IPv6]:PORT" or "ADDRESS"
// (port 4420), as the path segment /listeners/{address}:{port}. Throws usage_error.
std::string listener_segment(const std::string& text);

struct subsystem_args {
    std::string nqn;
    std::optional<std::string> serial, model;
    bool allow_any_host = false;
    std::vector<std::string> hosts;
};
nlohmann::json subsystem_body(const subsystem_args& args);

struct subsystem_patch_args {
    std::optional<bool> allow_any_host;
    std::optional<std::string> model, serial;
};
// Throws usage_error when nothing is to be changed.
nlohmann::json subsystem_patch_body(const subsystem_patch_args& args);

// "tls": "none" | "allowed" | "required" (usage_error otherwise); left out when empty.
nlohmann::json listener_body(const std::string& address, uint16_t port, const std::string& tls = {});
nlohmann::json referral_body(const std::string& address, uint16_t port);

// A host's keys from the command line: each given as the key itself (--dhchap-key K, visible to
// other users in ps) or as a file holding it (--dhchap-key-file PATH), or, for set-keys, cleared.
struct host_key_args {
    std::optional<std::string> dhchap_key, dhchap_ctrl_key, tls_psk;                 // the key
    std::optional<std::string> dhchap_key_file, dhchap_ctrl_key_file, tls_psk_file;  // a file with it
    bool clear_dhchap_key = false, clear_dhchap_ctrl_key = false, clear_tls_psk = false;
};
// The three keys' options: OPTION KEY, OPTION-file PATH and, for set-keys, --clear-NAME
// (OPTION without its "--"), each setting its member of host_key_args.
struct host_key_option {
    const char* field;   // JSON field, "dhchap_key"
    const char* option;  // "--dhchap-key"
    const char* help;    // what the key is
    std::optional<std::string> host_key_args::*key;
    std::optional<std::string> host_key_args::*file;
    bool host_key_args::*clear;
};
inline const host_key_option host_key_options[] = {
    {"dhchap_key", "--dhchap-key",
     "DH-HMAC-CHAP secret the host authenticates with (DHHC-1:HH:...:, nvme gen-dhchap-key)",
     &host_key_args::dhchap_key, &host_key_args::dhchap_key_file, &host_key_args::clear_dhchap_key},
    {"dhchap_ctrl_key", "--dhchap-ctrl-key",
     "DH-HMAC-CHAP secret ferry authenticates with to the host (bidirectional; needs --dhchap-key)",
     &host_key_args::dhchap_ctrl_key, &host_key_args::dhchap_ctrl_key_file, &host_key_args::clear_dhchap_ctrl_key},
    {"tls_psk", "--tls-psk", "TLS PSK (NVMeTLSkey-1:HH:...:, nvme gen-tls-key); the host must then use TLS",
     &host_key_args::tls_psk, &host_key_args::tls_psk_file, &host_key_args::clear_tls_psk},
};
// The key of a --*-file option: the file's content without trailing whitespace. usage_error
// naming the option and path (never the content) when it cannot be read or is empty.
std::string read_key_argument_file(const std::string& path, const std::string& option);
// POST /subsystems/{nqn}/hosts: {"nqn", and the keys given}. usage_error when a key and its
// file are both given, or a --clear option is given (only set-keys clears).
nlohmann::json host_body(const std::string& hostnqn, const host_key_args& args);
// PATCH /subsystems/{nqn}/hosts/{hostnqn}: the keys given, null for those cleared. usage_error
// when nothing is to be changed, or a key is both given and cleared.
nlohmann::json host_keys_patch_body(const host_key_args& args);

// "true"/"false"/"yes"/"no"/"1"/"0"/"on"/"off"; usage_error otherwise.
bool parse_bool(const std::string& text, const std::string& option);

// An answer that is not 2xx as the exception ferryctl exits with: "METHOD PATH: HTTP STATUS
// REASON: error message (at /json/path)"; the body's text when it is not the API's JSON error.
// 401 and 403 become auth_error, everything else api_refused.
[[noreturn]] void throw_api_error(const std::string& method, const std::string& path, const http_response& res);

// The body's "warnings" (2xx answers), empty when there are none.
std::vector<std::string> response_warnings(const nlohmann::json& body);

}  // namespace ferry::ferryctl
