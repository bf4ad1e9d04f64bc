// Hostile hosts against a real reactor over TCP: a host that takes buffers and never sends the
// data, and (below) floods of connections that never finish their handshake.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <thread>

#include "test_host.hh"
#include "transport/listener.hh"
#include "transport/reactor.hh"

using namespace ferry;
using namespace ferry::test;

namespace {
struct one_reactor_target {
    target::target tgt{test_config()};
    std::unique_ptr<transport::reactor> r;
    std::unique_ptr<transport::acceptor> acc;
    uint16_t port = 0;
    explicit one_reactor_target(transport::reactor_options o, size_t max_conn = 64) {
        r = std::make_unique<transport::reactor>(0, o);
        acc = std::make_unique<transport::acceptor>(std::vector<transport::reactor*>{r.get()}, tgt, max_conn);
        port = acc->listen({"127.0.0.1", 0});
        r->start();
        acc->start();
    }
    ~one_reactor_target() {
        acc->stop();
        r->stop();
    }
    // The pool belongs to the reactor thread: read it there.
    size_t free_chunks() {
        std::promise<size_t> p;
        auto f = p.get_future();
        r->post([&] { p.set_value(r->pool().free_chunks()); });
        return f.get();
    }
};

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

TEST(transport_limits, host_that_never_sends_r2t_data_cannot_pin_the_pool) {
    transport::reactor_options o;
    o.pool_bytes = 32u << 20;  // 4096 chunks; a connection may hold a quarter: 8 MiB (one maximal transfer)
    o.r2t_timeout_ns = 1'500'000'000ull;
    one_reactor_target st(o);
    host_conn admin(dial(st.port), false, false);
    const uint16_t cntlid = admin.bring_up_admin(open_nqn, host_a, 30000);
    host_conn good(dial(st.port), false, false);
    good.icreq();
    ASSERT_EQ(good.connect(open_nqn, host_a, 1, cntlid, 127, 0).status, 0);
    const size_t idle = st.free_chunks();

    // The hog: 64 x 1 MiB writes, never any data.
    host_conn hog(dial(st.port), false, false);
    hog.icreq();
    ASSERT_EQ(hog.connect(open_nqn, host_a, 2, cntlid, 127, 0).status, 0);
    const auto hog_start = std::chrono::steady_clock::now();
    for (int i = 0; i < 64; ++i) hog.send_capsule(hog.rw(nvme::io_opc::write, 1, 0, 256), {}, false, 1u << 20);
    ::usleep(100'000);
    // It holds its cap (8 MiB) and its queue's reserved chunks, not more.
    const size_t during = st.free_chunks();
    EXPECT_LE(during, idle - 1024);
    EXPECT_GE(during, idle - 1024 - 129);

    // Meanwhile the other host's 128 KiB writes keep completing.
    auto data = pattern(128 * 1024, 11);
    int writes = 0;
    double worst_ms = 0;
    while (ms_since(hog_start) < 2500) {
        const auto t = std::chrono::steady_clock::now();
        auto w = good.cmd(good.rw(nvme::io_opc::write, 1, 32u * (writes % 64), 32), data, 0, false);
        ASSERT_EQ(w.status, 0);
        worst_ms = std::max(worst_ms, ms_since(t));
        ++writes;
    }
    EXPECT_LT(worst_ms, 500.0 * timing_slack) << writes << " writes";
    auto rd = good.cmd(good.rw(nvme::io_opc::read, 1, 0, 32), {}, 128 * 1024);
    EXPECT_EQ(rd.data, data);

    // The hog was closed by the R2T timeout and every chunk it held is back.
    EXPECT_TRUE(hog.target_closed());
    size_t now_free = 0;
    for (int i = 0; i < 300 && (now_free = st.free_chunks()) != idle; ++i) ::usleep(10'000);
    EXPECT_EQ(now_free, idle);
}

namespace {
// Raises the soft open-file limit to the hard one (the flood below needs ~3000 descriptors).
void raise_fd_limit() {
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
}

// A legitimate host: admin queue, I/O queue, one verified write + read.
void legit_host_session(uint16_t port, uint32_t seed, double* setup_ms) {
    const auto t = std::chrono::steady_clock::now();
    host_conn admin(dial(port), false, false);
    const uint16_t cntlid = admin.bring_up_admin(open_nqn, host_a, 30000);
    host_conn io(dial(port), false, false);
    io.icreq();
    ASSERT_EQ(io.connect(open_nqn, host_a, 1, cntlid, 31, 0).status, 0);
    *setup_ms = ms_since(t);
    auto d = pattern(64 * 1024, seed);
    const uint64_t lba = 16u * (seed % 200);
    ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, lba, 16), d, 0, false).status, 0);
    auto r = io.cmd(io.rw(nvme::io_opc::read, 1, lba, 16), {}, 64 * 1024);
    ASSERT_EQ(r.status, 0);
    EXPECT_EQ(r.data, d);
}
}  // namespace

TEST(transport_limits, idle_flood_from_one_address_does_not_lock_others_out) {
    raise_fd_limit();
    transport::reactor_options o;
    o.pool_bytes = 16u << 20;
    one_reactor_target st(o, 1024);  // default pending caps: 32 per address, 256 overall
    std::vector<int> flood;
    flood.reserve(1500);
    std::atomic<size_t> opened{0};
    std::thread flooder([&] {
        for (int i = 0; i < 1500; ++i) {
            flood.push_back(dial(st.port, "127.0.0.2"));
            opened.store(flood.size());
        }
    });
    while (opened.load() < 600) ::usleep(1000);
    // During the flood and after it, a host from another address gets in within a second.
    int sessions = 0;
    double worst_ms = 0;
    while (opened.load() < 1500 || sessions < 3) {
        double setup_ms = 0;
        try {
            legit_host_session(st.port, static_cast<uint32_t>(sessions), &setup_ms);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "legitimate host after " << sessions << " sessions: " << e.what();
        }
        if (HasFailure()) break;
        worst_ms = std::max(worst_ms, setup_ms);
        ++sessions;
    }
    flooder.join();
    // The flood goes on while no legitimate connection is open, then the host comes back.
    for (int i = 0; i < 64; ++i) flood.push_back(dial(st.port, "127.0.0.2"));
    ::usleep(200'000);
    double setup_ms = 0;
    try {
        legit_host_session(st.port, 1000, &setup_ms);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "legitimate host after the flood: " << e.what();
    }
    worst_ms = std::max(worst_ms, setup_ms);
    EXPECT_LT(worst_ms, 1000.0 * timing_slack) << sessions << " sessions during the flood";
    // Every flood connection was shed except the newest ones, at most 32 of which are pending
    // (none is refused: with 1,024 slots the acceptor waits for shed ones to close instead).
    const transport::admission& adm = st.acc->admitted();
    for (int i = 0; i < 200 && adm.shed_total() + adm.refused_total() + adm.pending() < 1564u; ++i) ::usleep(10'000);
    EXPECT_EQ(adm.shed_total() + adm.refused_total() + adm.pending(), 1564u);
    EXPECT_EQ(adm.pending(), 32u);
    EXPECT_GE(adm.shed_total(), 1000u) << adm.refused_total() << " refused";
    EXPECT_EQ(adm.refused_total(), 0u);
    for (int fd : flood) ::close(fd);
}

namespace {
// Holds a running reactor inside a posted message (it runs no pass, so closes nothing and
// adopts nothing) from construction until release() (any thread) or destruction.
class held_reactor {
public:
    explicit held_reactor(transport::reactor& r) {
        auto held_f = _held.get_future();
        r.post([this, go = _go_f] {
            _held.set_value();
            go.wait();
        });
        held_f.wait();
    }
    ~held_reactor() { release(); }
    void release() {
        if (!_released.exchange(true)) _go.set_value();
    }

private:
    std::promise<void> _held, _go;
    std::shared_future<void> _go_f = _go.get_future().share();
    std::atomic<bool> _released{false};
};
}  // namespace

TEST(transport_limits, shed_connections_not_yet_closed_do_not_get_a_newcomer_refused) {
    // A reactor behind a flood has not yet closed the connections shed for newcomers: they fill
    // the pending_total allowed above max_connections. A host that arrives then waits in the
    // listen backlog until they are closed; it is not refused while ferryd has room for it.
    raise_fd_limit();
    target::target tgt{test_config()};
    transport::reactor_options o;
    o.pool_bytes = 16u << 20;
    transport::reactor r(0, o);
    transport::acceptor acc({&r}, tgt, transport::admission_limits{8, 2, 4, 0});
    const uint16_t port = acc.listen({"127.0.0.1", 0});
    r.start();
    acc.start();
    held_reactor held(r);  // it closes nothing until released
    std::vector<int> flood;
    for (int i = 0; i < 16; ++i) flood.push_back(dial(port, "127.0.0.2"));
    const transport::admission& adm = acc.admitted();
    // 12 admitted (8 + 4): 10 shed for newer ones, 2 pending; the last 4 wait in the backlog.
    for (int i = 0; i < 300 && adm.open() < 12; ++i) ::usleep(10'000);
    ::usleep(50'000);
    EXPECT_EQ(adm.open(), 12u);
    EXPECT_EQ(adm.shedding(), 10u);
    EXPECT_EQ(adm.refused_total(), 0u);
    std::thread releaser([&] {
        ::usleep(200'000);
        held.release();
    });
    double setup_ms = 0;
    try {
        legit_host_session(port, 7, &setup_ms);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "legitimate host: " << e.what();
    }
    releaser.join();
    EXPECT_EQ(adm.refused_total(), 0u);
    for (int fd : flood) ::close(fd);
    acc.stop();
    r.stop();
}

TEST(transport_limits, a_socket_handed_to_a_stopping_reactor_is_closed_and_its_slot_given_back) {
    target::target tgt{test_config()};
    transport::reactor_options o;
    o.pool_bytes = 4u << 20;
    auto adm = std::make_shared<transport::admission>(transport::admission_limits{8, 2, 4, 0});
    // Two sockets: one handed over after stop() (its message never runs), one to a reactor that
    // stops with the message still queued (the loop's last drain runs it).
    int never_run[2], last_drain[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, never_run), 0);
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, last_drain), 0);
    auto info_for = [&](int fd, uint64_t id) {
        transport::connection_info info;
        info.id = id;
        info.peer = "test:" + std::to_string(id);
        info.ticket = adm->admit("10.0.0.1", fd, id);
        return info;
    };
    {
        transport::reactor r(0, o);
        r.start();
        held_reactor held(r);
        r.adopt(last_drain[0], info_for(last_drain[0], 1), tgt);  // queued behind the held message
        std::thread stopper([&] { r.stop(); });
        ::usleep(50'000);  // stop() has cleared the running flag by now
        held.release();
        stopper.join();
        EXPECT_EQ(adm->open(), 0u);
        r.adopt(never_run[0], info_for(never_run[0], 2), tgt);
        EXPECT_EQ(adm->open(), 1u);
    }
    EXPECT_EQ(adm->open(), 0u);
    for (int peer : {last_drain[1], never_run[1]}) {
        pollfd p{peer, POLLIN, 0};
        ASSERT_EQ(::poll(&p, 1, 2000), 1) << "fd " << peer;
        char c;
        EXPECT_EQ(::read(peer, &c, 1), 0) << "the reactor's end is still open";
        ::close(peer);
    }
}

namespace {
// Lowers the soft open-file limit so that no new descriptor can be created; restores it.
struct no_new_descriptors {
    rlimit saved{};
    no_new_descriptors() {
        ::getrlimit(RLIMIT_NOFILE, &saved);
        const int lowest_free = ::dup(0);
        ::close(lowest_free);
        rlimit tight = saved;
        tight.rlim_cur = static_cast<rlim_t>(lowest_free);
        ::setrlimit(RLIMIT_NOFILE, &tight);
    }
    ~no_new_descriptors() { ::setrlimit(RLIMIT_NOFILE, &saved); }
};

// What `make` threw, as an exception_ptr: read it only after the descriptor limit is back
// (UBSan's vptr check of e.what() needs a descriptor of its own).
std::exception_ptr construction_failure(const std::function<void()>& make) {
    try {
        make();
    } catch (...) {
        return std::current_exception();
    }
    return nullptr;
}

std::string message_of(const std::exception_ptr& failure) {
    if (!failure) return "(no error)";
    try {
        std::rethrow_exception(failure);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "(not a std::exception)";
    }
}
}  // namespace

TEST(transport_limits, reactor_and_acceptor_without_descriptors_fail_at_start_with_a_clear_error) {
    target::target tgt{test_config()};
    transport::reactor_options o;
    o.pool_bytes = 4u << 20;
    // UBSan's vptr check needs descriptors on its slow path (the first check of each type):
    // make the same objects once while descriptors are there.
    message_of(construction_failure([&] {
        transport::reactor r(7, o);
        transport::acceptor a({}, tgt, size_t(8));
        throw std::runtime_error("warm-up");
    }));
    std::exception_ptr reactor_failure, acceptor_failure;
    {
        no_new_descriptors guard;
        reactor_failure = construction_failure([&] { transport::reactor r(7, o); });
        acceptor_failure = construction_failure([&] { transport::acceptor a({}, tgt, size_t(8)); });
    }
    const std::string reactor_error = message_of(reactor_failure), acceptor_error = message_of(acceptor_failure);
    EXPECT_NE(reactor_error.find("reactor 7: cannot create its epoll instance"), std::string::npos) << reactor_error;
    EXPECT_NE(acceptor_error.find("acceptor: cannot create its stop eventfd"), std::string::npos) << acceptor_error;
}

TEST(transport_limits, one_listener_cannot_take_every_connection_slot) {
    auto adm = std::make_shared<transport::admission>(transport::admission_limits{10, 32, 256, 2});
    using refusal = transport::admission::refusal;
    refusal why = refusal::none;
    auto a1 = adm->admit("10.0.0.1", -1, 1, "0.0.0.0:4420", &why);
    auto a2 = adm->admit("10.0.0.2", -1, 2, "0.0.0.0:4420", &why);
    ASSERT_TRUE(a1 && a2);
    EXPECT_EQ(adm->admit("10.0.0.3", -1, 3, "0.0.0.0:4420", &why), nullptr);
    EXPECT_EQ(why, refusal::listener_full);
    // Another listener still has room, and so does the first once one of its connections goes.
    auto b1 = adm->admit("10.0.0.3", -1, 4, "192.168.1.5:4420", &why);
    EXPECT_TRUE(b1);
    a1->release();
    auto a3 = adm->admit("10.0.0.3", -1, 5, "0.0.0.0:4420", &why);
    EXPECT_TRUE(a3);
    EXPECT_EQ(adm->open(), 3u);
    EXPECT_EQ(adm->refused_total(), 1u);
}

TEST(transport_limits, a_flood_of_events_is_reported_once_a_second_with_its_count) {
    transport::event_summary s;
    const uint64_t t0 = 5'000'000'000;
    EXPECT_EQ(s.take_due(t0), 0u);  // nothing happened
    s.add();
    EXPECT_EQ(s.take_due(t0), 1u);  // the first event is reported at once
    for (int i = 0; i < 1000; ++i) s.add();
    EXPECT_EQ(s.take_due(t0 + 999'999'999), 0u);  // not within the second
    s.add();
    EXPECT_EQ(s.take_due(t0 + 1'000'000'000), 1001u);  // then all of them, in one report
    EXPECT_EQ(s.take_due(t0 + 3'000'000'000), 0u);
}
