#include "tools/ferryctl/http_client.hh"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ferry::ferryctl {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// Sync Beast calls ignore tcp_stream's expiry (that is for async operations), so the kernel's
// socket timeouts bound each read and write instead.
void set_socket_timeouts(tcp::socket& socket, std::chrono::seconds timeout) {
    timeval tv{};
    tv.tv_sec = timeout.count();
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::string describe(const beast::error_code& ec) {
    if (ec == asio::error::would_block || ec == asio::error::try_again || ec == beast::error::timeout)
        return "timed out";
    return ec.message();
}

template <class Stream>
http_response exchange(Stream& stream, http::request<http::string_body>& req, const std::string& where) {
    beast::error_code ec;
    http::write(stream, req, ec);
    if (ec) throw connect_error(where + ": sending the request failed: " + describe(ec));
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    http::read(stream, buffer, parser, ec);
    if (ec) throw connect_error(where + ": no valid HTTP response: " + describe(ec));
    auto& res = parser.get();
    return http_response{res.result_int(), std::string(res.reason()), std::move(res.body())};
}

}  // namespace

http_response api_client::request(const std::string& method, const std::string& path,
                                  const std::optional<std::string>& json_body) const {
    const api_url& url = _opts.url;
    const std::string where = url.text();
    http::verb verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) throw usage_error("unknown HTTP method " + method);

    http::request<http::string_body> req{verb, url.base_path + path, 11};
    req.set(http::field::host, url.host_header());
    req.set(http::field::user_agent, "ferryctl");
    req.set(http::field::accept, "application/json");
    req.set(http::field::authorization, "Bearer " + _opts.token);
    if (json_body) {
        req.set(http::field::content_type, "application/json");
        req.body() = *json_body;
    }
    req.prepare_payload();

    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::error_code ec;
    auto endpoints = resolver.resolve(url.host, std::to_string(url.port), ec);
    if (ec) throw connect_error(where + ": cannot resolve '" + url.host + "': " + ec.message());

    if (!url.tls) {
        tcp::socket socket(ioc);
        asio::connect(socket, endpoints, ec);
        if (ec)
            throw connect_error(where + ": cannot connect: " + describe(ec) +
                                " (is ferryd running with management enabled?)");
        set_socket_timeouts(socket, _opts.timeout);
        http_response res = exchange(socket, req, where);
        socket.shutdown(tcp::socket::shutdown_both, ec);
        return res;
    }

    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    if (!_opts.ca_file.empty()) {
        ctx.load_verify_file(_opts.ca_file, ec);
        if (ec) throw connect_error("cannot load CA file '" + _opts.ca_file + "': " + ec.message());
    } else {
        ctx.set_default_verify_paths(ec);
        if (ec) throw connect_error("cannot load the system's CA certificates: " + ec.message());
    }
    beast::ssl_stream<tcp::socket> stream(ioc, ctx);
    bool host_is_address = false;
    {
        asio::ip::make_address(url.host, ec);
        host_is_address = !ec;
    }
    // SNI carries names only, never addresses (RFC 6066 section 3).
    if (!host_is_address && !SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()))
        throw connect_error(where + ": cannot set the TLS server name");
    stream.set_verify_callback(asio::ssl::host_name_verification(url.host));
    asio::connect(stream.next_layer(), endpoints, ec);
    if (ec)
        throw connect_error(where + ": cannot connect: " + describe(ec) +
                            " (is ferryd running with management enabled?)");
    set_socket_timeouts(stream.next_layer(), _opts.timeout);
    stream.handshake(asio::ssl::stream_base::client, ec);
    if (ec)
        throw connect_error(where + ": TLS handshake failed: " + describe(ec) +
                            (_opts.ca_file.empty() ? " (--ca-file names the CA of a self-signed certificate)" : ""));
    http_response res = exchange(stream, req, where);
    stream.shutdown(ec);  // the server may just close: a truncated shutdown is not an error here
    return res;
}

std::string read_token_file(const std::string& path) {
    std::ifstream in(path);
    if (!in)
        throw auth_error("cannot read token file '" + path + "': " + std::strerror(errno) +
                         " (--token-file or FERRY_TOKEN_FILE names another)");
    std::ostringstream text;
    text << in.rdbuf();
    std::string token = text.str();
    while (!token.empty() &&
           (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' || token.back() == '\t'))
        token.pop_back();
    if (token.empty()) throw auth_error("token file '" + path + "' is empty");
    return token;
}

}  // namespace ferry::ferryctl
