// A target served over TCP on loopback by real reactor threads and an acceptor on an
// ephemeral port: the fixture of the tests that drive reactors (reactor, live changes, stats).
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_host.hh"
#include "transport/listener.hh"
#include "transport/reactor.hh"

namespace ferry::test {

struct serve_options {
    target::target_config cfg = test_config();
    std::function<void(target::target&)> prepare;  // runs before the reactors start (e.g. wraps a store)
    size_t max_connections = 64;
    transport::socket_engine engine = transport::socket_engine::posix;
    transport::tls_mode tls = transport::tls_mode::none;  // of the listener
    std::string congestion_control;                       // of the listener ("": the system's)
};

struct served_target {
    target::target tgt;
    std::vector<std::unique_ptr<transport::reactor>> reactors;
    std::unique_ptr<transport::acceptor> acc;
    uint16_t port = 0;

    explicit served_target(unsigned n, const serve_options& o = {}) : tgt(o.cfg) {
        if (o.prepare) o.prepare(tgt);
        std::vector<transport::reactor*> rp;
        for (unsigned i = 0; i < n; ++i) {
            transport::reactor_options ro;
            ro.pool_bytes = 16u << 20;
            ro.engine = o.engine;
            reactors.push_back(std::make_unique<transport::reactor>(i, ro));
            rp.push_back(reactors.back().get());
        }
        acc = std::make_unique<transport::acceptor>(rp, tgt, o.max_connections);
        acc->set_congestion_control(o.congestion_control);
        port = acc->listen({"127.0.0.1", 0, o.tls});
        for (auto& r : reactors) r->start();
        acc->start();
    }
    ~served_target() {
        acc->stop();
        for (auto& r : reactors) r->stop();
    }
};

// A host's association over TCP: the admin queue and `ios` I/O queues (depth 128), each its own
// connection (spread over the reactors in that order).
struct tcp_association {
    std::unique_ptr<host_conn> admin;
    std::vector<std::unique_ptr<host_conn>> io;
    uint16_t cntlid = 0;
    tcp_association(uint16_t port, const std::string& subnqn, const std::string& hostnqn, unsigned ios = 1,
                    uint32_t kato = 5000) {
        admin = std::make_unique<host_conn>(dial(port), false, false);
        cntlid = admin->bring_up_admin(subnqn, hostnqn, kato);
        for (unsigned q = 1; q <= ios; ++q) {
            io.push_back(std::make_unique<host_conn>(dial(port), false, false));
            io.back()->icreq();
            auto r = io.back()->connect(subnqn, hostnqn, static_cast<uint16_t>(q), cntlid, 127, 0);
            if (r.status) throw std::runtime_error("I/O queue connect failed: " + std::to_string(r.status));
        }
    }
};

}  // namespace ferry::test
