#include "transport/listener.hh"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "env/thread.hh"
#include "transport/reactor.hh"

namespace ferry::transport {
namespace {
std::string format_addr(const sockaddr_storage& ss, uint16_t* port_out = nullptr, bool* v6 = nullptr) {
    char buf[INET6_ADDRSTRLEN] = {};
    uint16_t port = 0;
    if (ss.ss_family == AF_INET6) {
        auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
        ::inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof(buf));
        port = ntohs(a.sin6_port);
    } else {
        auto& a = reinterpret_cast<const sockaddr_in&>(ss);
        ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
        port = ntohs(a.sin_port);
    }
    if (port_out) *port_out = port;
    if (v6) *v6 = ss.ss_family == AF_INET6;
    return buf;
}
}  // namespace

namespace {
// Pending caps stay below the connection limit (so connected hosts always keep some room).
admission_limits clamp(admission_limits l) {
    const size_t below = l.max_connections > 1 ? l.max_connections - 1 : 1;
    l.pending_total = std::max<size_t>(1, std::min(l.pending_total, below));
    l.pending_per_address = std::max<size_t>(1, std::min(l.pending_per_address, l.pending_total));
    return l;
}
}  // namespace

acceptor::acceptor(std::vector<reactor*> reactors, handler_factory& factory, admission_limits limits)
    : _reactors(std::move(reactors)), _factory(factory), _admission(std::make_shared<admission>(clamp(limits))) {
    _stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (_stop_fd < 0)
        throw std::runtime_error(std::string("acceptor: cannot create its stop eventfd: ") + std::strerror(errno));
    _wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (_wake_fd < 0) {
        const std::string err = std::strerror(errno);
        ::close(_stop_fd);
        throw std::runtime_error("acceptor: cannot create its wake eventfd: " + err);
    }
}

acceptor::acceptor(std::vector<reactor*> reactors, handler_factory& factory, size_t max_connections)
    : acceptor(std::move(reactors), factory, admission_limits{max_connections, 32, 256}) {}

acceptor::~acceptor() {
    stop();
    for (const auto& l : _listening) ::close(l.fd);
    if (_stop_fd >= 0) ::close(_stop_fd);
    if (_wake_fd >= 0) ::close(_wake_fd);
}

uint16_t acceptor::listen(const listen_address& addr) {
    sockaddr_storage ss{};
    socklen_t len;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, addr.address.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(addr.port);
        len = sizeof(*v4);
    } else if (::inet_pton(AF_INET6, addr.address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(addr.port);
        len = sizeof(*v6);
    } else {
        throw std::runtime_error("listener '" + addr.address + "': not a numeric IPv4 or IPv6 address");
    }
    const std::string where = addr.address + ":" + std::to_string(addr.port);
    int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("listener " + where + ": socket: " + std::strerror(errno));
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    // Set on the listening socket, the congestion control is inherited by every connection
    // accepted through it (tcp_ca_openreq_child keeps a setsockopt choice).
    if (!_congestion_control.empty() && ::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, _congestion_control.data(),
                                                     socklen_t(_congestion_control.size())) < 0) {
        std::string err = std::strerror(errno);
        ::close(fd);
        throw std::runtime_error("listener " + where + ": TCP congestion control '" + _congestion_control +
                                 "': " + err);
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0 || ::listen(fd, SOMAXCONN) < 0) {
        std::string err = std::strerror(errno);
        ::close(fd);
        throw std::runtime_error("listener " + where + ": " + err);
    }
    sockaddr_storage bound{};
    socklen_t blen = sizeof(bound);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
    uint16_t port = 0;
    format_addr(bound, &port);
    {
        std::unique_lock g(_lock);
        _listening.push_back({fd, addr.address, port, addr.tls});
        ++_version;
        wake_and_wait(g);
    }
    spdlog::info("listening on tcp {}:{}{}", addr.address, port,
                 addr.tls == tls_mode::none ? "" : fmt::format(" (TLS {})", to_string(addr.tls)));
    return port;
}

namespace {
std::string first_line_of(const char* path) {
    std::string line;
    if (FILE* f = std::fopen(path, "re")) {
        char buf[256];
        if (std::fgets(buf, sizeof(buf), f)) line = buf;
        std::fclose(f);
    }
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    return line;
}
}  // namespace

std::string congestion_control_error(const std::string& name) {
    if (name.empty()) return "empty name";
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::string("socket: ") + std::strerror(errno);
    std::string err;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(), socklen_t(name.size())) < 0)
        err = std::strerror(errno);
    ::close(fd);
    return err;
}

std::string system_congestion_control() { return first_line_of("/proc/sys/net/ipv4/tcp_congestion_control"); }

std::string available_congestion_controls() {
    return first_line_of("/proc/sys/net/ipv4/tcp_available_congestion_control");
}

namespace {
// Same address (as bytes: "::0" is "::") and port.
bool same_address(const std::string& a, const std::string& b) {
    if (a == b) return true;
    uint8_t x[16] = {}, y[16] = {};
    if (::inet_pton(AF_INET, a.c_str(), x) == 1)
        return ::inet_pton(AF_INET, b.c_str(), y) == 1 && !std::memcmp(x, y, 4);
    if (::inet_pton(AF_INET6, a.c_str(), x) == 1)
        return ::inet_pton(AF_INET6, b.c_str(), y) == 1 && !std::memcmp(x, y, 16);
    return false;
}
}  // namespace

void acceptor::unlisten(const listen_address& addr) {
    int fd = -1;
    {
        std::unique_lock g(_lock);
        auto it = std::find_if(_listening.begin(), _listening.end(), [&](const listening& l) {
            return l.port == addr.port && same_address(l.address, addr.address);
        });
        if (it == _listening.end())
            throw std::runtime_error("not listening on " + addr.address + ":" + std::to_string(addr.port));
        fd = it->fd;
        _listening.erase(it);
        ++_version;
        // The accept thread may be in poll() on that socket: close it only once it polls the
        // new set (a closed descriptor number may be reused meanwhile by another open).
        wake_and_wait(g);
    }
    ::close(fd);
    spdlog::info("stopped listening on tcp {}:{}", addr.address, addr.port);
}

void acceptor::wake_and_wait(std::unique_lock<std::mutex>& g) {
    if (!_running) return;
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(_wake_fd, &one, sizeof(one));
    const uint64_t want = _version;
    _polled_changed.wait(g, [&] { return !_running || _polled_version >= want; });
}

void acceptor::start() {
    {
        std::lock_guard g(_lock);
        _running = true;
    }
    _thread = std::thread([this] { run(); });
}

void acceptor::stop() {
    if (!_thread.joinable()) return;
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(_stop_fd, &one, sizeof(one));
    _thread.join();
    std::lock_guard g(_lock);
    _running = false;
    _polled_changed.notify_all();
}

void acceptor::run() {
    std::vector<pollfd> pfds;
    std::vector<listening> polled_set;  // pfds[i]'s listener
    uint64_t polled = ~uint64_t(0);
    for (;;) {
        {
            std::lock_guard g(_lock);
            if (polled != _version) {
                pfds.clear();
                polled_set.clear();
                for (const auto& l : _listening) {
                    pfds.push_back({l.fd, POLLIN, 0});
                    polled_set.push_back(l);
                }
                pfds.push_back({_wake_fd, POLLIN, 0});
                pfds.push_back({_stop_fd, POLLIN, 0});
                polled = _polled_version = _version;
                _polled_changed.notify_all();
            }
        }
        int timeout_ms = -1;
        if (_accept_paused_until_ns) {
            const uint64_t now = env::now_ns();
            if (now < _accept_paused_until_ns) {
                // Listening sockets are not polled until the pause ends (see accept_one).
                for (size_t i = 0; i + 2 < pfds.size(); ++i) pfds[i].events = 0;
                timeout_ms = static_cast<int>((_accept_paused_until_ns - now) / 1'000'000 + 1);
            } else {
                _accept_paused_until_ns = 0;
                for (size_t i = 0; i + 2 < pfds.size(); ++i) pfds[i].events = POLLIN;
            }
        }
        int n = ::poll(pfds.data(), pfds.size(), timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            spdlog::error("acceptor: poll: {}", std::strerror(errno));
            std::lock_guard g(_lock);
            _running = false;
            _polled_changed.notify_all();
            return;
        }
        if (pfds.back().revents) return;
        if (pfds[pfds.size() - 2].revents) {
            uint64_t v;
            [[maybe_unused]] auto r = ::read(_wake_fd, &v, sizeof(v));
            continue;  // the set changed: re-read it before accepting on any socket of it
        }
        for (size_t i = 0; i + 2 < pfds.size(); ++i)
            if (pfds[i].revents & POLLIN) accept_one(polled_set[i]);
    }
}

void acceptor::accept_one(const listening& l) {
    const int lfd = l.fd;
    const tls_mode tls = l.tls;
    if (_admission->shed_still_closing_at_cap()) {
        // Accepting now would refuse a newcomer (say, a host among a flood's shed connections)
        // only because its reactor has not yet closed the connections shed for it: leave it in
        // the listen backlog and look again in a millisecond.
        const uint64_t now = env::now_ns();
        _accept_paused_until_ns = now + shed_wait_ns;
        _shed_waits.add();
        if (const uint64_t n = _shed_waits.take_due(now))
            spdlog::warn(
                "accepting paused {} time(s) since the last report: {} shed connection(s) not yet closed by their "
                "reactor fill the {} allowed above --max-connections {} ({} open); newcomers wait in the listen "
                "backlog",
                n, _admission->shedding(), _admission->limits().pending_total, _admission->limits().max_connections,
                _admission->open());
        return;
    }
    sockaddr_storage peer{};
    socklen_t plen = sizeof(peer);
    int fd = ::accept4(lfd, reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        if (err == EAGAIN || err == EINTR || err == ECONNABORTED) return;
        // Out of descriptors (EMFILE/ENFILE) or memory: the pending connection stays in the
        // backlog and poll() would report it again at once; pause accepting briefly rather than
        // spin, and say so at most once a second.
        const uint64_t now = env::now_ns();
        _accept_paused_until_ns = now + accept_pause_ns;
        _accept_errors.add();
        if (const uint64_t n = _accept_errors.take_due(now))
            spdlog::warn("accept failed {} time(s) since the last report: {}; accepting paused for {} ms each time", n,
                         std::strerror(err), accept_pause_ns / 1'000'000);
        return;
    }
    connection_info info;
    info.id = _next_id++;
    info.listener_tls = tls;
    uint16_t pport = 0;
    const std::string peer_addr = format_addr(peer, &pport);
    info.peer = fmt::format("{}:{}", peer_addr, pport);
    sockaddr_storage local{};
    socklen_t llen = sizeof(local);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen);
    info.local_addr = format_addr(local, &info.local_port, &info.ipv6);

    const std::string listener = fmt::format("{}:{}", l.address, l.port);
    admission::refusal why = admission::refusal::none;
    info.ticket = _admission->admit(peer_addr, fd, info.id, listener, &why);
    if (!info.ticket) {
        // Once a second at most: a flood at the limit must not write a line per connection.
        _refused.add();
        if (const uint64_t n = _refused.take_due(env::now_ns()))
            spdlog::warn(
                "refused {} connection(s) since the last report, {} open (limit {}, {} per listener); latest "
                "conn {} from {} to {}: {}",
                n, _admission->open(), _admission->limits().max_connections, _admission->limits().max_per_listener,
                info.id, info.peer, listener,
                why == admission::refusal::listener_full ? "its listener is full" : "ferryd is full");
        ::close(fd);
        return;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    reactor* r = _reactors[_rr++ % _reactors.size()];
    r->adopt(fd, std::move(info), _factory);
}

}  // namespace ferry::transport
