// HTTP/1.1 (HTTPS when configured) front end of the REST API: Boost.Beast on one io_context
// run by one thread of its own. Each connection reads one request at a time within
// request_timeout (slow or idle clients are closed), bodies beyond max_body_bytes get 413, and
// beyond max_connections a newcomer gets 503 and is closed.
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <memory>
#include <thread>

#include "mgmt/api.hh"

namespace ferry::mgmt {
namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

std::string endpoint_text(const tcp::endpoint& ep) {
    const auto a = ep.address();
    return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

struct shared_state {
    api_service& service;
    std::atomic<size_t> connections{0};
};

template <class Stream>
class session : public std::enable_shared_from_this<session<Stream>> {
public:
    template <class... Args>
    session(std::shared_ptr<shared_state> st, bool over_cap, std::string peer, Args&&... args)
        : _st(std::move(st)), _over_cap(over_cap), _peer(std::move(peer)), _stream(std::forward<Args>(args)...) {
        ++_st->connections;
    }
    ~session() { --_st->connections; }

    void run() {
        lowest().expires_after(_st->service.options().request_timeout);
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            start();
        } else {
            _stream.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
                if (ec) {
                    spdlog::debug("api: TLS handshake with {}: {}", self->_peer, ec.message());
                    return;
                }
                self->start();
            });
        }
    }

private:
    std::shared_ptr<shared_state> _st;
    bool _over_cap;
    std::string _peer;
    Stream _stream;
    beast::flat_buffer _buffer;
    std::optional<http::request_parser<http::string_body>> _parser;
    http::response<http::string_body> _res;
    std::array<char, 4096> _drain;

    beast::tcp_stream& lowest() { return beast::get_lowest_layer(_stream); }

    void start() {
        if (_over_cap) {
            api_response r;
            r.status = 503;
            r.body = R"({"error": "too many API connections; try again"})"
                     "\n";
            respond(r, 11, false);
            return;
        }
        read_request();
    }

    void read_request() {
        _parser.emplace();
        _parser->body_limit(_st->service.options().max_body_bytes);
        _parser->header_limit(16 * 1024);
        lowest().expires_after(_st->service.options().request_timeout);
        http::async_read(_stream, _buffer, *_parser,
                         [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof ||
            ec == asio::error::connection_reset || ec == asio::error::operation_aborted)
            return close();
        if (ec == http::error::body_limit) {
            api_response r;
            r.status = 413;
            r.body = R"({"error": "the request body is larger than )" +
                     std::to_string(_st->service.options().max_body_bytes) +
                     R"( bytes"})"
                     "\n";
            return respond(r, 11, false);
        }
        if (ec) {
            api_response r;
            r.status = 400;
            r.body = nlohmann::json({{"error", "not an HTTP/1.1 request: " + ec.message()}}).dump() + "\n";
            return respond(r, 11, false);
        }
        const auto& req = _parser->get();
        api_request ar;
        ar.method = std::string(req.method_string());
        ar.target = std::string(req.target());
        if (auto it = req.find(http::field::authorization); it != req.end())
            ar.authorization = std::string(it->value());
        ar.body = req.body();
        ar.peer = _peer;
        const api_response r = _st->service.handle(ar);
        respond(r, req.version(), req.keep_alive());
    }

    void respond(const api_response& r, unsigned version, bool keep_alive) {
        _res = {};
        _res.version(version);
        _res.result(r.status);
        _res.set(http::field::server, "ferryd");
        if (!r.content_type.empty()) _res.set(http::field::content_type, r.content_type);
        _res.set(http::field::cache_control, "no-store");
        for (const auto& [k, v] : r.headers) _res.set(k, v);
        _res.body() = r.body;
        _res.keep_alive(keep_alive);
        _res.prepare_payload();
        lowest().expires_after(_st->service.options().request_timeout);
        http::async_write(_stream, _res, [self = this->shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->close();
            if (self->_res.keep_alive()) return self->read_request();
            self->finish();
        });
    }

    // Half-close and read what the client still sends (e.g. the rest of a refused body) for a
    // moment, so that closing does not reset the connection before it read the answer.
    void finish() {
        beast::error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
        lowest().expires_after(std::chrono::seconds(1));
        drain();
    }
    void drain() {
        lowest().async_read_some(asio::buffer(_drain), [self = this->shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->close();
            self->drain();
        });
    }
    void close() {
        beast::error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
        lowest().close();
    }
};

}  // namespace

struct api_server::impl {
    api_service& service;
    std::optional<ssl::context> tls;  // outlives the io_context and the sessions it destroys
    asio::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    std::shared_ptr<shared_state> state;
    std::thread thread;

    explicit impl(api_service& s) : service(s), state(std::make_shared<shared_state>(s)) {}

    void accept() {
        acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket sock) {
            if (ec == asio::error::operation_aborted) return;
            if (!ec) {
                beast::error_code pe;
                const auto ep = sock.remote_endpoint(pe);
                const std::string peer = pe ? "?" : endpoint_text(ep);
                const bool over_cap = state->connections.load() >= service.options().max_connections;
                if (over_cap) spdlog::warn("api: {} connections open; {} gets 503", state->connections.load(), peer);
                if (tls) {
                    std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(state, over_cap, peer,
                                                                                    std::move(sock), *tls)
                        ->run();
                } else {
                    std::make_shared<session<beast::tcp_stream>>(state, over_cap, peer, std::move(sock))->run();
                }
            } else {
                spdlog::warn("api: accept: {}", ec.message());
            }
            accept();
        });
    }
};

api_server::api_server(api_service& service) : _impl(std::make_unique<impl>(service)) {}

api_server::~api_server() {
    stop();
}

bool api_server::tls() const {
    return _impl->tls.has_value();
}

void api_server::start() {
    const management_config& m = _impl->service.options().management;
    const std::string where = m.address + ":" + std::to_string(m.port);
    if (!m.tls_cert.empty()) {
        try {
            _impl->tls.emplace(ssl::context::tls_server);
            _impl->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
            _impl->tls->use_certificate_chain_file(m.tls_cert);
            _impl->tls->use_private_key_file(m.tls_key, ssl::context::pem);
        } catch (const std::exception& e) {
            _impl->tls.reset();
            throw std::runtime_error("REST API: TLS certificate " + m.tls_cert + " / key " + m.tls_key + ": " +
                                     e.what());
        }
    }
    try {
        const tcp::endpoint ep(asio::ip::make_address(m.address), m.port);
        _impl->acceptor.open(ep.protocol());
        _impl->acceptor.set_option(asio::socket_base::reuse_address(true));
        _impl->acceptor.bind(ep);
        _impl->acceptor.listen(asio::socket_base::max_listen_connections);
        _port = _impl->acceptor.local_endpoint().port();
    } catch (const boost::system::system_error& e) {
        throw std::runtime_error("REST API on " + where + ": " + e.code().message());
    } catch (const std::exception& e) {
        throw std::runtime_error("REST API on " + where + ": " + e.what());
    }
    _impl->accept();
    _impl->thread = std::thread([this] {
        pthread_setname_np(pthread_self(), "ferry-api");
        _impl->ioc.run();
    });
}

void api_server::stop() {
    if (!_impl->thread.joinable()) return;
    _impl->ioc.stop();  // abandons sessions in progress; their sockets close with the io_context
    _impl->thread.join();
}

}  // namespace ferry::mgmt
