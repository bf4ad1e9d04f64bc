// TCP listeners: one acceptor thread waits on every listening socket and spreads accepted
// connections over the reactors (round robin), within a connection limit.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "transport/connection.hh"

namespace ferry::transport {

class reactor;

struct listen_address {
    std::string address;  // numeric IPv4 or IPv6
    uint16_t port = 4420;
};

class acceptor {
public:
    // `max_connections` bounds connections across all reactors (a flood is refused, not queued).
    acceptor(std::vector<reactor*> reactors, handler_factory& factory, size_t max_connections);
    ~acceptor();

    // Binds and listens; returns the bound port (useful with port 0). Throws
    // std::runtime_error naming the address on failure.
    uint16_t listen(const listen_address& addr);
    void start();
    void stop();

private:
    void run();
    void accept_one(int lfd);

    std::vector<reactor*> _reactors;
    handler_factory& _factory;
    size_t _max_connections;
    std::vector<int> _fds;
    int _stop_fd = -1;
    std::thread _thread;
    std::atomic<uint64_t> _next_id{1};
    size_t _rr = 0;
};

}  // namespace ferry::transport
