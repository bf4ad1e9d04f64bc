// Reactors and the acceptor over real TCP on loopback: connections spread over reactor
// threads, one controller's queues on different reactors, keep-alive across reactors.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstdlib>
#include <thread>

#include "served_target.hh"

using namespace ferry;
using namespace ferry::test;

class reactor_engines : public ::testing::TestWithParam<transport::socket_engine> {};
INSTANTIATE_TEST_SUITE_P(engine, reactor_engines,
                         ::testing::Values(transport::socket_engine::posix, transport::socket_engine::uring),
                         [](const auto& info) {
                             return info.param == transport::socket_engine::posix ? "posix" : "uring";
                         });

TEST_P(reactor_engines, queues_of_one_controller_on_different_reactors) {
    serve_options o;
    o.engine = GetParam();
    served_target st(2, o);
    host_conn admin(dial(st.port), false, false);
    uint16_t id = admin.bring_up_admin(open_nqn, host_a);
    host_conn q1(dial(st.port), true, true), q2(dial(st.port), false, false);
    q1.icreq();
    q2.icreq();
    ASSERT_EQ(q1.connect(open_nqn, host_a, 1, id, 127, 0).status, 0);
    ASSERT_EQ(q2.connect(open_nqn, host_a, 2, id, 127, 0).status, 0);
    // Round robin: admin and q2 on reactor 0, q1 on reactor 1.
    EXPECT_EQ(st.reactors[0]->connection_count(), 2u);
    EXPECT_EQ(st.reactors[1]->connection_count(), 1u);
    auto d = pattern(256 * 1024, 7);
    EXPECT_EQ(q1.cmd(q1.rw(nvme::io_opc::write, 1, 0, 64), d, 0, false).status, 0);
    auto r = q2.cmd(q2.rw(nvme::io_opc::read, 1, 0, 64), {}, 256 * 1024);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.data, d);
    // A protocol error is still answered with a C2HTermReq and a close.
    transport::data_pdu bogus{};
    transport::fill_header(bogus.ch, transport::pdu_type::h2c_data, 0, 24, 24, 24 + 4);
    bogus.ttag = 999;
    const uint32_t four = 4;
    q2.send_raw(&bogus, sizeof(bogus));
    q2.send_raw(&four, 4);
    auto t = q2.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, transport::fes::invalid_header_field);
    EXPECT_TRUE(q2.target_closed());
}

TEST_P(reactor_engines, keep_alive_expiry_closes_queues_on_every_reactor) {
    serve_options o;
    o.engine = GetParam();
    served_target st(2, o);
    host_conn admin(dial(st.port), false, false);
    uint16_t id = admin.bring_up_admin(open_nqn, host_a, 300);  // 300 ms KATO
    host_conn q1(dial(st.port), false, false);
    q1.icreq();
    ASSERT_EQ(q1.connect(open_nqn, host_a, 1, id, 127, 0).status, 0);
    EXPECT_EQ(st.tgt.find_subsystem(open_nqn)->controller_count(), 1u);
    // Silence: both connections are closed by the target.
    EXPECT_TRUE(admin.target_closed());
    EXPECT_TRUE(q1.target_closed());
    // A connection shuts its socket down before it lets go of its controller: the host can see
    // the close a moment before the controller is gone (a CI run under load saw 1 here).
    const auto sub = st.tgt.find_subsystem(open_nqn);
    for (int i = 0; i < 200 && sub->controller_count() != 0; ++i) ::usleep(5'000);
    EXPECT_EQ(sub->controller_count(), 0u);
}

TEST_P(reactor_engines, connection_limit_refuses_the_flood_not_the_served) {
    serve_options o;
    o.max_connections = 2;
    o.engine = GetParam();
    served_target st(1, o);
    host_conn a(dial(st.port), false, false);
    a.bring_up_admin(open_nqn, host_a);
    host_conn b(dial(st.port), false, false);
    b.icreq();
    host_conn refused(dial(st.port), false, false);
    EXPECT_TRUE(refused.target_closed());
    // The served connection still works.
    EXPECT_EQ(a.cmd(a.make(nvme::admin_opc::keep_alive)).status, 0);
}

namespace {
uint16_t local_port(int fd, bool peer) {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                        : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return rc == 0 && a.sin_family == AF_INET ? ntohs(a.sin_port) : 0;
}
// The congestion control of this process's socket for the TCP connection from local port
// `client_port` to `server_port` (the target's end of a dialed connection); "" if not found.
std::string server_end_congestion(uint16_t server_port, uint16_t client_port) {
    DIR* d = ::opendir("/proc/self/fd");
    if (!d) return "";
    std::string found;
    while (dirent* e = ::readdir(d)) {
        const int fd = std::atoi(e->d_name);
        if (fd <= 2 || fd == ::dirfd(d)) continue;
        if (local_port(fd, false) != server_port || local_port(fd, true) != client_port) continue;
        char name[32] = {};
        socklen_t len = sizeof(name);
        if (::getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) == 0) found.assign(name, ::strnlen(name, len));
    }
    ::closedir(d);
    return found;
}
}  // namespace

// ferryd's --tcp-congestion: set on the listening socket, inherited by every accepted
// connection, whatever the system default. Two algorithms every Linux has built in.
TEST(acceptor, accepted_connections_take_the_listeners_congestion_control) {
    for (const std::string cc : {"reno", "cubic"}) {
        ASSERT_EQ(transport::congestion_control_error(cc), "") << cc;
        serve_options o;
        o.congestion_control = cc;
        served_target st(1, o);
        const int fd = dial(st.port);
        const uint16_t client_port = local_port(fd, false);
        host_conn admin(fd, false, false);
        admin.bring_up_admin(open_nqn, host_a);  // accepted and adopted by the reactor
        EXPECT_EQ(server_end_congestion(st.port, client_port), cc);
    }
}

TEST(acceptor, a_congestion_control_the_kernel_lacks_is_refused_by_name) {
    EXPECT_NE(transport::congestion_control_error("no-such-cc"), "");
    serve_options o;
    served_target st(1, o);
    st.acc->set_congestion_control("no-such-cc");
    try {
        st.acc->listen({"127.0.0.1", 0, transport::tls_mode::none});
        FAIL() << "listen with an unknown congestion control succeeded";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("TCP congestion control 'no-such-cc'"), std::string::npos) << e.what();
    }
}
