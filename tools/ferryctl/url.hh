// Where ferryctl finds the management API, and how names go into request paths.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ferry::ferryctl {

// A command line or environment value that makes no sense: exit status 2 (see exit_code).
class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// "http://127.0.0.1:8420", "https://[::1]:8443/prefix". Only http and https; no user info,
// query or fragment. base_path is "" or starts with '/' and has no trailing '/'.
struct api_url {
    bool tls = false;
    std::string host;  // name or address, without the brackets of an IPv6 literal
    uint16_t port = 0;
    std::string base_path;

    bool host_is_ipv6() const { return host.find(':') != std::string::npos; }
    // The Host header value: host, brackets around IPv6, ":port" unless the scheme's default.
    std::string host_header() const;
    // scheme://host:port[base_path], as given back in messages
    std::string text() const;
};

// Throws usage_error naming the URL and what is wrong with it.
api_url parse_api_url(std::string_view url);

// Percent-encodes one path segment (RFC 3986): unreserved characters and ':' '@' stay, every
// other byte becomes %XX, so an NQN with '/', '?', '#', '%' or '+' is one segment.
std::string percent_encode(std::string_view segment);

// The {address}:{port} segment naming a listener or referral: "10.0.0.1:4420", "[fd00::1]:4420"
// (IPv6 in brackets), percent-encoded.
std::string endpoint_segment(std::string_view address, uint16_t port);

}  // namespace ferry::ferryctl
