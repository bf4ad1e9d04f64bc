// A synchronous HTTP/1.1 client for the management API (Boost.Beast; TLS through Boost.Asio's
// OpenSSL layer when the URL is https://). One connection per request: ferryctl makes a few.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include "tools/ferryctl/url.hh"

namespace ferry::ferryctl {

// The API could not be reached or spoke no HTTP: name resolution, connect, TLS handshake or
// certificate check, timeout, a malformed response. Exit status 3.
class connect_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The token could not be read, or the API refused it (401/403). Exit status 4.
class auth_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct http_response {
    unsigned status = 0;
    std::string reason;  // "Not Found"
    std::string body;
};

struct client_options {
    api_url url;
    std::string token;    // sent as "Authorization: Bearer TOKEN"
    std::string ca_file;  // https: trust these certificates instead of the system's
    std::chrono::seconds timeout{30};
};

class api_client {
public:
    explicit api_client(client_options opts) : _opts(std::move(opts)) {}

    // method "GET", "POST", "PATCH", "DELETE"; path below the URL's base path ("/api/v1/...").
    // A body is sent as application/json. Returns whatever status the server answered; throws
    // connect_error when there is no answer.
    http_response request(const std::string& method, const std::string& path,
                          const std::optional<std::string>& json_body = std::nullopt) const;

    const client_options& options() const { return _opts; }

private:
    client_options _opts;
};

// The token file's content without trailing whitespace (the newline an editor adds). Throws
// auth_error naming the file when it cannot be read or is empty.
std::string read_token_file(const std::string& path);

}  // namespace ferry::ferryctl
