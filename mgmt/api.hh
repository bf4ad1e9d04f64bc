// The REST management API (see mgmt/README.md): api_service routes, authenticates,
// validates, applies a change through the control_plane and persists the state file;
// api_server is its HTTP/1.1 (or HTTPS) front end on Boost.Beast, on a thread of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "mgmt/config.hh"
#include "mgmt/control_plane.hh"
#include "mgmt/key_files.hh"

namespace ferry::mgmt {

struct api_options {
    management_config management;
    std::string state_file;  // rewritten atomically after every accepted change
    std::string token_file;  // resolved path (management.token_file or the default)
    ram_budget ram;          // RAM namespaces added or grown through the API must fit
    // The keys the loaded file gave by "*_file" reference: those in the key directory next to
    // the state file are ferryd's own (kept, deleted when no longer referenced).
    std::vector<key_file_ref> key_files;
    // /devices (tests use a fake tree)
    std::string sysfs = "/sys", mounts_file = "/proc/self/mounts", swaps_file = "/proc/swaps";
    size_t max_body_bytes = 1 << 20;                    // larger bodies: 413
    size_t max_connections = 32;                        // more at once: 503
    std::chrono::milliseconds request_timeout{10'000};  // to send one request, or idle between two
};

struct api_request {
    std::string method;  // "GET", ...
    std::string target;  // "/api/v1/subsystems/nqn.x%3Ay?q" as received
    std::string authorization;
    std::string body;
    std::string peer;  // "addr:port", for the log
};

struct api_response {
    unsigned status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};

// One route: what the OpenAPI test compares with mgmt/openapi.json.
struct route_info {
    std::string method;
    std::string pattern;             // "/api/v1/subsystems/{nqn}"
    std::vector<unsigned> statuses;  // every status it answers with
};

// "/api/v1/openapi.json"'s document (mgmt/openapi.json, compiled in).
const std::string& openapi_document();

// Reads the token (trailing newline ignored); creates the file (0600, 32 random bytes as hex)
// when it does not exist. Throws std::runtime_error naming the path.
std::string load_or_create_token(const std::string& path, bool& created);
// Temp file (mode 0600) in the same directory, fsync, rename, fsync the directory. Throws
// std::runtime_error starting with `what` and the path.
void write_file_atomically(const std::string& path, const std::string& content, const char* what = "state file");

class api_service {
public:
    api_service(api_options opt, control_plane& control, std::string token);
    ~api_service();
    api_response handle(const api_request& req);
    const std::vector<route_info>& routes() const;
    const api_options& options() const { return _opt; }

    struct route;  // method, pattern, statuses and handler (api_service.cc)
    struct context;

private:
    api_options _opt;
    control_plane& _control;
    std::string _token;
    std::mutex _change_lock;  // one change at a time, from validation to the state file
    key_store _keys;          // the key files the state file references
    std::vector<route> _routes;
    std::vector<route_info> _route_infos;

    void add_routes();
    void persist(const target::target_config& cfg);
    api_response dispatch(const api_request& req);
};

class api_server {
public:
    api_server(api_service& service);
    ~api_server();
    // Binds management.address:port (port 0: an ephemeral one) and starts the thread; throws
    // std::runtime_error naming the address (or the TLS files) on failure.
    void start();
    uint16_t port() const { return _port; }
    bool tls() const;
    void stop();

private:
    struct impl;
    std::unique_ptr<impl> _impl;
    uint16_t _port = 0;
};

}  // namespace ferry::mgmt
