#include "tools/ferryctl/url.hh"

#include <charconv>

namespace ferry::ferryctl {

namespace {

bool is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

[[noreturn]] void bad_url(std::string_view url, const std::string& why) {
    throw usage_error("bad API URL '" + std::string(url) + "': " + why);
}

}  // namespace

std::string api_url::host_header() const {
    std::string h = host_is_ipv6() ? "[" + host + "]" : host;
    if (port != (tls ? 443 : 80)) h += ":" + std::to_string(port);
    return h;
}

std::string api_url::text() const {
    return std::string(tls ? "https" : "http") + "://" + (host_is_ipv6() ? "[" + host + "]" : host) + ":" +
           std::to_string(port) + base_path;
}

api_url parse_api_url(std::string_view url) {
    api_url out;
    std::string_view rest;
    if (url.starts_with("http://")) {
        rest = url.substr(7);
    } else if (url.starts_with("https://")) {
        out.tls = true;
        rest = url.substr(8);
    } else {
        bad_url(url, "it must start with http:// or https://");
    }
    if (rest.find_first_of("?#") != std::string_view::npos) bad_url(url, "a query or fragment is not allowed");
    size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
    if (authority.find('@') != std::string_view::npos) bad_url(url, "user info is not allowed (use --token-file)");
    std::string_view port_text;
    if (authority.starts_with("[")) {
        size_t close = authority.find(']');
        if (close == std::string_view::npos) bad_url(url, "'[' of an IPv6 address without ']'");
        out.host = std::string(authority.substr(1, close - 1));
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') bad_url(url, "expected ':PORT' after ']'");
            port_text = after.substr(1);
            if (port_text.empty()) bad_url(url, "empty port");
        }
        if (out.host.find(':') == std::string::npos) bad_url(url, "brackets hold an IPv6 address only");
    } else {
        size_t colon = authority.find(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) {
            port_text = authority.substr(colon + 1);
            if (port_text.empty()) bad_url(url, "empty port");
        }
    }
    if (out.host.empty()) bad_url(url, "no host");
    out.port = out.tls ? 443 : 80;
    if (!port_text.empty()) {
        unsigned port = 0;
        auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
        if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535)
            bad_url(url, "port '" + std::string(port_text) + "' is not a number from 1 to 65535");
        out.port = static_cast<uint16_t>(port);
    }
    while (path.ends_with("/")) path.remove_suffix(1);
    out.base_path = std::string(path);
    return out;
}

std::string percent_encode(std::string_view segment) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(segment.size());
    for (unsigned char c : segment) {
        if (is_unreserved(c) || c == ':' || c == '@') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 0xf];
        }
    }
    return out;
}

std::string endpoint_segment(std::string_view address, uint16_t port) {
    std::string key =
        address.find(':') != std::string_view::npos ? "[" + std::string(address) + "]" : std::string(address);
    return percent_encode(key + ":" + std::to_string(port));
}

}  // namespace ferry::ferryctl
