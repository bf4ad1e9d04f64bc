// TCP listeners: one acceptor thread waits on every listening socket and spreads accepted
// connections over the reactors (round robin), within a connection limit.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/admission.hh"
#include "transport/connection.hh"
#include "transport/event_summary.hh"

namespace ferry::transport {

class reactor;

struct listen_address {
    std::string address;  // numeric IPv4 or IPv6
    uint16_t port = 4420;
    tls_mode tls = tls_mode::none;  // given to each connection accepted here (connection_info)
};

class acceptor {
public:
    // `limits.max_connections` bounds connections across all reactors (counted from accept to
    // destruction; beyond it a newcomer is refused); connections that have not completed ICReq +
    // Connect are capped per source address and overall (the oldest is shed for a newcomer).
    acceptor(std::vector<reactor*> reactors, handler_factory& factory, admission_limits limits);
    // Default pending caps (32 per address, 256 overall), kept below max_connections.
    acceptor(std::vector<reactor*> reactors, handler_factory& factory, size_t max_connections);
    const admission& admitted() const { return *_admission; }
    ~acceptor();

    // TCP congestion control of the listening sockets opened from now on, which connections
    // accepted through them inherit ("" = the system's, net.ipv4.tcp_congestion_control). Call
    // before listen() on other threads may run (ferryd: before the REST API starts).
    void set_congestion_control(std::string name) { _congestion_control = std::move(name); }

    // Binds and listens; returns the bound port (useful with port 0). Throws
    // std::runtime_error naming the address on failure. Thread-safe, also while started.
    uint16_t listen(const listen_address& addr);
    // Closes that listening socket (thread-safe, also while started); connections accepted
    // through it stay. Throws std::runtime_error if nothing listens there.
    void unlisten(const listen_address& addr);
    void start();
    void stop();

private:
    void run();
    void wake_and_wait(std::unique_lock<std::mutex>& g);  // until run() polls the current set

    struct listening {
        int fd = -1;
        std::string address;  // as given
        uint16_t port = 0;    // as bound
        tls_mode tls = tls_mode::none;
    };
    void accept_one(const listening& l);
    std::vector<reactor*> _reactors;
    handler_factory& _factory;
    std::shared_ptr<admission> _admission;
    // Listening sockets: changed by listen()/unlisten() on any thread; run() re-reads the set
    // when the version moved and says which version it polls, so that unlisten() closes a
    // socket only once the accept thread no longer polls it.
    std::mutex _lock;
    std::condition_variable _polled_changed;
    std::vector<listening> _listening;
    uint64_t _version = 0;
    uint64_t _polled_version = 0;
    bool _running = false;
    int _wake_fd = -1;
    int _stop_fd = -1;
    std::thread _thread;
    std::atomic<uint64_t> _next_id{1};
    size_t _rr = 0;
    // Accept thread only: refusals and accept errors are logged at most once a second.
    static constexpr uint64_t accept_pause_ns = 100'000'000;
    // While shed connections still closing fill their allowance (admission::shed_still_closing_at_cap).
    static constexpr uint64_t shed_wait_ns = 1'000'000;
    event_summary _refused, _accept_errors, _shed_waits;
    uint64_t _accept_paused_until_ns = 0;
    std::string _congestion_control;
};

// Why a socket cannot take TCP congestion control `name` (setsockopt TCP_CONGESTION, e.g. "No
// such file or directory" for an algorithm the kernel does not have, "Operation not permitted"
// for one outside net.ipv4.tcp_allowed_congestion_control without CAP_NET_ADMIN); "" if it can.
std::string congestion_control_error(const std::string& name);
// net.ipv4.tcp_congestion_control and tcp_available_congestion_control ("" if unreadable).
std::string system_congestion_control();
std::string available_congestion_controls();

}  // namespace ferry::transport
