// Live changes of the target (the control API behind the management REST API), against real
// reactors over TCP: namespaces added, removed and grown under connected hosts, subsystems,
// hosts and controllers removed, discovery log changes, and the errors that change nothing.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/stat.h>

#include <atomic>
#include <cctype>
#include <functional>
#include <future>
#include <thread>

#include "served_target.hh"

using namespace ferry;
using namespace ferry::test;

namespace {

target::namespace_config ram_ns(uint32_t nsid, uint64_t bytes = 1u << 20, uint32_t block_size = 4096) {
    target::namespace_config n;
    n.nsid = nsid;
    n.backend = target::backend_kind::ram;
    n.size_bytes = bytes;
    n.block_size = block_size;
    return n;
}

template <typename T>
T as(const std::vector<uint8_t>& d, size_t off = 0) {
    T v{};
    std::memcpy(&v, d.data() + off, sizeof(T));
    return v;
}

// An association over TCP: admin queue (enabled) plus `ios` I/O queues (round robin over the
// reactors, so with two reactors the admin and I/O queue 2 share reactor 0, queue 1 is on 1).
uint16_t set_aen(host_conn& c, uint32_t mask) {
    auto s = c.make(nvme::admin_opc::set_features);
    s.cdw10 = nvme::fid::async_event;
    s.cdw11 = mask;
    return c.cmd(s).status;
}

// The NSIDs of a 4 KiB NSID list (log page 04h, Identify CNS 02h), up to the first zero.
std::vector<uint32_t> nsid_list(const std::vector<uint8_t>& page) {
    std::vector<uint32_t> ids;
    for (size_t at = 0; at + 4 <= page.size(); at += 4) {
        uint32_t id = as<uint32_t>(page, at);
        if (!id) break;
        ids.push_back(id);
    }
    return ids;
}

std::vector<uint32_t> changed_list(host_conn& c, bool rae = false) {
    return nsid_list(c.get_log(nvme::lid::changed_ns, 4096, 0, rae).data);
}

std::vector<uint32_t> active_list(host_conn& c) {
    return nsid_list(c.identify(nvme::cns::active_ns_list, 0).data);
}

uint16_t write_read_verify(host_conn& q, uint32_t nsid, uint64_t slba, uint32_t seed, uint32_t block_size = 4096) {
    auto d = pattern(block_size * 2, seed);
    auto w = q.cmd(q.rw(nvme::io_opc::write, nsid, slba, 2), d);
    if (w.status) return w.status;
    auto r = q.cmd(q.rw(nvme::io_opc::read, nsid, slba, 2), {}, block_size * 2);
    if (r.status) return r.status;
    return r.data == d ? 0 : 0xFFFF;
}

// A store whose queues hold every command until the test opens the gate: commands in flight.
struct gate_state {
    std::atomic<bool> open{false};
    std::atomic<bool> destroyed{false};
    std::atomic<bool> destroyed_on_reactor{false};  // by a thread named ferry-r<id>
    std::atomic<int> held{0};
    bool wakes = false;   // the queue says its completions wake the reactor (as rbd's do)
    env::wake_hook hook;  // the reactor's, taken at the first submit (before `held` moves)
    void open_gate() {
        open.store(true);
        if (wakes) hook();  // as rbd's push_done(): the reactor may be asleep
    }
};
class gated_queue final : public nvme::block_queue {
public:
    gated_queue(std::unique_ptr<nvme::block_queue> inner, std::shared_ptr<gate_state> g)
        : _inner(std::move(inner)), _g(std::move(g)) {}
    void submit(const nvme::sqe& cmd, std::span<const iovec> data, nvme::io_completion& done) override {
        _held.push_back({cmd, std::vector<iovec>(data.begin(), data.end()), &done});
        if (!_g->hook.wake) _g->hook = env::thread_wake_hook();
        _g->held.fetch_add(1);
    }
    unsigned poll() override {
        if (!_g->open.load() || _held.empty()) return 0;
        auto held = std::move(_held);
        _held.clear();
        for (auto& h : held) {
            _g->held.fetch_sub(1);
            _inner->submit(h.cmd, h.data, *h.done);
        }
        return static_cast<unsigned>(held.size());
    }
    unsigned in_flight() const override { return static_cast<unsigned>(_held.size()); }
    bool completes_by_wakeup() const override { return _g->wakes; }

private:
    struct held_cmd {
        nvme::sqe cmd;
        std::vector<iovec> data;
        nvme::io_completion* done;
    };
    std::unique_ptr<nvme::block_queue> _inner;
    std::shared_ptr<gate_state> _g;
    std::vector<held_cmd> _held;
};
class gated_store final : public nvme::block_store {
public:
    gated_store(std::unique_ptr<nvme::block_store> inner, std::shared_ptr<gate_state> g)
        : _inner(std::move(inner)), _g(std::move(g)) {}
    ~gated_store() override {
        char name[16] = {};
        ::pthread_getname_np(::pthread_self(), name, sizeof(name));
        const std::string thread = name;
        _g->destroyed_on_reactor.store(thread.size() > 7 && thread.compare(0, 7, "ferry-r") == 0 &&
                                       std::isdigit(static_cast<unsigned char>(thread[7])));
        _g->destroyed.store(true);
    }
    uint64_t block_count() const override { return _inner->block_count(); }
    uint32_t block_size() const override { return _inner->block_size(); }
    std::string describe() const override { return "gated test store"; }
    std::unique_ptr<nvme::block_queue> create_queue(unsigned depth, const env::dma_pool* buffers,
                                                    nvme::queue_group* group) override {
        return std::make_unique<gated_queue>(_inner->create_queue(depth, buffers, group), _g);
    }

private:
    std::unique_ptr<nvme::block_store> _inner;
    std::shared_ptr<gate_state> _g;
};

// Namespace 1 of the open subsystem behind `gate` (a serve_options::prepare step).
void gate_namespace_1(target::target& t, const std::shared_ptr<gate_state>& gate) {
    auto n = t.find_subsystem(open_nqn)->find_ns(1);
    n->store = std::make_unique<gated_store>(std::move(n->store), gate);
}

// Everything of a configuration, for "nothing changed" comparisons.
std::string dump(const target::target_config& c) {
    std::string s;
    auto hex = [](const auto& a) {
        std::string h;
        for (uint8_t b : a) h += fmt::format("{:02x}", b);
        return h;
    };
    for (const auto& l : c.listeners) s += fmt::format("L {}:{}\n", l.address, l.port);
    for (const auto& r : c.referrals) s += fmt::format("R {}:{}\n", r.address, r.port);
    for (const auto& sc : c.subsystems) {
        s += fmt::format("S {} {} {} {}\n", sc.nqn, sc.serial, sc.model, sc.allow_any_host);
        for (const auto& h : sc.hosts) s += "  H " + h + "\n";
        for (const auto& n : sc.namespaces)
            s += fmt::format("  N {} {} {} {} {} {} {}\n", n.nsid, static_cast<int>(n.backend), n.size_bytes,
                             n.block_size, n.uuid ? hex(*n.uuid) : "-", n.nguid ? hex(*n.nguid) : "-",
                             n.eui64 ? hex(*n.eui64) : "-");
    }
    return s;
}

target::change_errc code_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const target::change_error& e) {
        return e.code;
    }
    ADD_FAILURE() << "no change_error thrown";
    return target::change_errc::failed;
}
}  // namespace

TEST(live, add_namespace_raises_aen_lists_changed_nsid_and_is_usable) {
    served_target lt(2);
    tcp_association a(lt.port, open_nqn, host_a, 1);
    host_conn& admin = *a.admin;
    ASSERT_EQ(set_aen(admin, nvme::aen::cfg_ns_attr), 0);
    auto aer = admin.make(nvme::admin_opc::async_event);
    admin.send_capsule(aer, {}, true, 0);
    EXPECT_EQ(active_list(admin), (std::vector<uint32_t>{1, 3}));

    // NSID 0: the lowest free one (2).
    EXPECT_EQ(lt.tgt.add_namespace(open_nqn, ram_ns(0)), 2u);
    // Usable at once, on the I/O queue connected before it existed (another reactor).
    EXPECT_EQ(write_read_verify(*a.io[0], 2, 10, 5), 0);
    auto ev = admin.wait(aer.cid);  // the AEN arrives within a timer tick
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->cqe.dw0, nvme::aen::ns_changed);
    EXPECT_EQ(active_list(admin), (std::vector<uint32_t>{1, 2, 3}));
    auto id = as<nvme::identify_ns>(admin.identify(nvme::cns::ns, 2).data);
    EXPECT_EQ(id.nsze, (1u << 20) / 4096);
    // Log page 04h: kept while RAE is set, cleared by a read without it.
    EXPECT_EQ(changed_list(admin, true), std::vector<uint32_t>{2});
    EXPECT_EQ(changed_list(admin), std::vector<uint32_t>{2});
    EXPECT_EQ(changed_list(admin), std::vector<uint32_t>{});
    // Not enabled: no AEN, but the log still lists the change.
    ASSERT_EQ(set_aen(admin, 0), 0);
    auto aer2 = admin.make(nvme::admin_opc::async_event);
    admin.send_capsule(aer2, {}, true, 0);
    EXPECT_EQ(lt.tgt.add_namespace(open_nqn, ram_ns(7)), 7u);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(changed_list(admin), std::vector<uint32_t>{7});  // the next answer is this, not the AER
    // UUID and NGUID derived as for configured namespaces; EUI64 only when given.
    auto cfg = lt.tgt.current_config();
    const auto& nss = cfg.subsystems[0].namespaces;
    ASSERT_EQ(nss.size(), 4u);
    EXPECT_EQ(nss[1].nsid, 2u);
    EXPECT_EQ(*nss[1].uuid, target::derive_id(std::string(open_nqn) + "/ns/2"));
    EXPECT_EQ(*nss[1].nguid, target::derive_id(std::string(open_nqn) + "/nguid/2"));
    EXPECT_FALSE(nss[1].eui64);
}

namespace {
// Four writes to namespace 1 held by its gated store; returns them.
std::vector<nvme::sqe> hold_writes(host_conn& q, gate_state& gate) {
    std::vector<nvme::sqe> writes;
    for (uint32_t i = 0; i < 4; ++i) {
        writes.push_back(q.rw(nvme::io_opc::write, 1, i, 1));
        q.send_capsule(writes.back(), pattern(4096, i), true, 4096);
    }
    for (int i = 0; i < 2000 && gate.held.load() < 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return writes;
}
// A target on `reactors` reactors whose namespace 1 sits behind a gate (its store holds the
// commands until the gate opens), and host_a's association to it with one I/O queue.
struct gated_target {
    std::shared_ptr<gate_state> gate;
    served_target lt;
    tcp_association a;
    explicit gated_target(unsigned reactors, bool wakes = false)
        : gate(std::make_shared<gate_state>()), lt(reactors, options(gate, wakes)), a(lt.port, open_nqn, host_a, 1) {}
    static serve_options options(const std::shared_ptr<gate_state>& g, bool wakes) {
        g->wakes = wakes;
        serve_options o;
        o.prepare = [g](target::target& t) { gate_namespace_1(t, g); };
        return o;
    }
};
bool wait_destroyed(gate_state& gate) {
    for (int i = 0; i < 5000 && !gate.destroyed.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return gate.destroyed.load();
}
}  // namespace

// A reset with writes in the store: the deleted I/O queue closes on its next tick, but CSTS.RDY
// stays 1 until those writes are done and the queue is gone, so a host that saw RDY 0 and
// writes again is not overtaken by an old write.
TEST(live, reset_completes_once_the_deleted_queues_commands_are_done) {
    gated_target g(2);
    auto& gate = g.gate;
    auto& a = g.a;
    auto writes = hold_writes(*a.io[0], *gate);
    ASSERT_EQ(gate->held.load(), 4);
    ASSERT_EQ(a.admin->property_set(nvme::reg::cc, (6u << 16) | (4u << 20)).status, 0);
    auto rdy = [&] { return a.admin->property_get(nvme::reg::csts).cqe.dw0 & nvme::csts::rdy; };
    for (int i = 0; i < 6; ++i) {  // well past the queue's timer tick (100 ms)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        EXPECT_EQ(rdy(), nvme::csts::rdy) << "after " << (i + 1) * 50 << " ms, writes still held";
    }
    gate->open_gate();
    uint32_t r = nvme::csts::rdy;
    for (int i = 0; i < 500 && r; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        r = rdy();
    }
    EXPECT_EQ(r, 0u);
    EXPECT_TRUE(a.io[0]->target_closed());
}

TEST(live, remove_namespace_lets_commands_in_flight_complete_then_closes_the_store) {
    gated_target g(2);
    auto& gate = g.gate;
    auto& lt = g.lt;
    auto& a = g.a;
    host_conn& q = *a.io[0];
    ASSERT_EQ(set_aen(*a.admin, nvme::aen::cfg_ns_attr), 0);
    auto writes = hold_writes(q, *gate);  // in flight
    ASSERT_EQ(gate->held.load(), 4);
    auto removal = std::async(std::launch::async, [&] { lt.tgt.remove_namespace(open_nqn, 1); });
    for (int i = 0; i < 2000 && lt.tgt.find_subsystem(open_nqn)->find_ns(1); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // New commands: Invalid Namespace at once (answered before the held writes).
    auto rd = q.cmd(q.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096);
    EXPECT_EQ(rd.status, nvme::sc::invalid_namespace | nvme::status_dnr);
    EXPECT_EQ(q.cmd(q.rw(nvme::io_opc::write, 1, 0, 1), pattern(4096, 9)).status,
              nvme::sc::invalid_namespace | nvme::status_dnr);
    // The other namespace is untouched.
    EXPECT_EQ(write_read_verify(q, 3, 0, 3, 512), 0);
    // The removal waits for the commands in flight; the store is still open.
    EXPECT_EQ(removal.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
    EXPECT_FALSE(gate->destroyed.load());
    gate->open.store(true);
    for (const auto& w : writes) {
        auto r = q.wait(w.cid);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 0);  // completed normally
    }
    ASSERT_EQ(removal.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    removal.get();
    EXPECT_TRUE(gate->destroyed.load());  // closed before remove_namespace returned
    EXPECT_EQ(active_list(*a.admin), std::vector<uint32_t>{3});
    EXPECT_EQ(changed_list(*a.admin), std::vector<uint32_t>{1});
    // The NSID can be used again, by a new namespace.
    EXPECT_EQ(lt.tgt.add_namespace(open_nqn, ram_ns(1)), 1u);
    EXPECT_EQ(write_read_verify(q, 1, 0, 11), 0);
}

// A reactor whose only work is commands in flight on a store that wakes it when they complete
// (rbd: librbd's threads) sleeps instead of polling, leaving the CPU to those threads; with a
// store only poll() advances (an SSD queue pair) it keeps polling. Seen through the reactor's
// busy time (wall-clock length of the passes that found work) over 400 ms with 4 writes held.
TEST(live, a_reactor_sleeps_while_only_waking_stores_have_commands_in_flight) {
    for (bool wakes : {true, false}) {
        SCOPED_TRACE(wakes ? "store wakes the reactor" : "store is polled");
        gated_target g(1, wakes);
        auto& gate = g.gate;
        auto& lt = g.lt;
        auto& a = g.a;
        host_conn& q = *a.io[0];
        auto writes = hold_writes(q, *gate);
        ASSERT_EQ(gate->held.load(), 4);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // past --idle-spin-us
        const uint64_t busy0 = lt.reactors[0]->busy_ns();
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
        const uint64_t busy_ms = (lt.reactors[0]->busy_ns() - busy0) / 1'000'000;
        if (wakes)
            EXPECT_LT(busy_ms, 100u);
        else
            EXPECT_GT(busy_ms, 300u);
        gate->open_gate();
        for (const auto& w : writes) {
            auto r = q.wait(w.cid);
            ASSERT_TRUE(r);
            EXPECT_EQ(r->status, 0);
        }
        EXPECT_EQ(write_read_verify(q, 1, 8, 4), 0);
    }
}

// Closing a store may block (rbd joins librbd's threads): never on a reactor, whose queue
// held the namespace last after remove_namespace gave up waiting.
TEST(live, a_namespace_whose_removal_timed_out_is_closed_off_the_reactors) {
    auto gate = std::make_shared<gate_state>();
    serve_options o;
    o.prepare = [&](target::target& t) {
        gate_namespace_1(t, gate);
        t.set_release_timeout_ms(100);
    };
    served_target lt(2, o);
    tcp_association a(lt.port, open_nqn, host_a, 1);
    host_conn& q = *a.io[0];
    auto writes = hold_writes(q, *gate);
    ASSERT_EQ(gate->held.load(), 4);
    EXPECT_EQ(code_of([&] { lt.tgt.remove_namespace(open_nqn, 1); }), target::change_errc::failed);
    EXPECT_FALSE(gate->destroyed.load());  // the queue still uses it
    gate->open.store(true);
    for (const auto& w : writes) {
        auto r = q.wait(w.cid);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 0);
    }
    ASSERT_TRUE(wait_destroyed(*gate));
    EXPECT_FALSE(gate->destroyed_on_reactor.load());
}

// The same for a removed subsystem whose queues had commands in flight.
TEST(live, a_removed_subsystems_stores_are_closed_off_the_reactors) {
    gated_target g(2);
    auto& gate = g.gate;
    auto& lt = g.lt;
    auto& a = g.a;
    hold_writes(*a.io[0], *gate);
    ASSERT_EQ(gate->held.load(), 4);
    lt.tgt.remove_subsystem(open_nqn);
    EXPECT_FALSE(gate->destroyed.load());  // its queue still has the writes
    gate->open.store(true);
    ASSERT_TRUE(wait_destroyed(*gate));
    EXPECT_FALSE(gate->destroyed_on_reactor.load());
}

TEST(live, remove_namespace_of_idle_queues_returns_within_a_timer_tick) {
    served_target lt(2);
    tcp_association a(lt.port, open_nqn, host_a, 2);
    EXPECT_EQ(write_read_verify(*a.io[0], 3, 0, 1, 512), 0);
    EXPECT_EQ(write_read_verify(*a.io[1], 3, 0, 2, 512), 0);
    const uint64_t t0 = env::now_ns();
    lt.tgt.remove_namespace(open_nqn, 3);
    EXPECT_LT(env::now_ns() - t0, uint64_t(1'000'000'000 * timing_slack));
    EXPECT_EQ(a.io[1]->cmd(a.io[1]->rw(nvme::io_opc::read, 3, 0, 1), {}, 512).status,
              nvme::sc::invalid_namespace | nvme::status_dnr);
}

TEST(live, grow_namespace_reports_the_new_size_and_serves_the_new_blocks) {
    served_target lt(1);
    tcp_association a(lt.port, open_nqn, host_a, 1);
    host_conn& admin = *a.admin;
    ASSERT_EQ(set_aen(admin, nvme::aen::cfg_ns_attr), 0);
    auto aer = admin.make(nvme::admin_opc::async_event);
    admin.send_capsule(aer, {}, true, 0);
    const uint64_t old_blocks = (16u << 20) / 4096;
    EXPECT_EQ(write_read_verify(*a.io[0], 1, old_blocks - 2, 1), 0);
    EXPECT_EQ(a.io[0]->cmd(a.io[0]->rw(nvme::io_opc::read, 1, old_blocks, 1), {}, 4096).status,
              nvme::sc::lba_out_of_range | nvme::status_dnr);
    lt.tgt.resize_namespace(open_nqn, 1, 64u << 20);
    auto ev = admin.wait(aer.cid);
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->cqe.dw0, nvme::aen::ns_changed);
    EXPECT_EQ(changed_list(admin), std::vector<uint32_t>{1});
    EXPECT_EQ(as<nvme::identify_ns>(admin.identify(nvme::cns::ns, 1).data).nsze, (64u << 20) / 4096);
    // Old data kept, new blocks usable and zero.
    auto old = a.io[0]->cmd(a.io[0]->rw(nvme::io_opc::read, 1, old_blocks - 2, 2), {}, 8192);
    EXPECT_EQ(old.data, pattern(8192, 1));
    auto fresh = a.io[0]->cmd(a.io[0]->rw(nvme::io_opc::read, 1, old_blocks + 100, 1), {}, 4096);
    EXPECT_EQ(fresh.status, 0);
    EXPECT_EQ(fresh.data, std::vector<uint8_t>(4096, 0));
    EXPECT_EQ(write_read_verify(*a.io[0], 1, (64u << 20) / 4096 - 2, 4), 0);
    EXPECT_EQ(lt.tgt.current_config().subsystems[0].namespaces[0].size_bytes, 64u << 20);
}

TEST(live, grow_file_namespace) {
    char path[] = "/tmp/ferry-live-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    {
        served_target lt(1);
        target::namespace_config n;
        n.nsid = 5;
        n.backend = target::backend_kind::file;
        n.path = path;
        n.size_bytes = 1u << 20;
        n.block_size = 4096;
        EXPECT_EQ(lt.tgt.add_namespace(open_nqn, n), 5u);
        tcp_association a(lt.port, open_nqn, host_a, 1);
        lt.tgt.resize_namespace(open_nqn, 5, 4u << 20);
        EXPECT_EQ(write_read_verify(*a.io[0], 5, (4u << 20) / 4096 - 2, 8), 0);
        struct stat st {};
        ::stat(path, &st);
        EXPECT_EQ(st.st_size, 4 << 20);
    }
    ::unlink(path);
}

TEST(live, remove_subsystem_closes_every_queue_and_recreating_it_lets_hosts_back) {
    served_target lt(2);
    tcp_association a(lt.port, open_nqn, host_a, 2);
    tcp_association other(lt.port, restricted_nqn, host_a, 1);
    auto cfg = lt.tgt.current_config().subsystems[0];
    ASSERT_EQ(cfg.nqn, open_nqn);
    lt.tgt.remove_subsystem(open_nqn);
    // All queues, on both reactors, within a timer tick or so.
    EXPECT_TRUE(a.admin->target_closed());
    EXPECT_TRUE(a.io[0]->target_closed());
    EXPECT_TRUE(a.io[1]->target_closed());
    EXPECT_FALSE(lt.tgt.find_subsystem(open_nqn));
    // Another subsystem's association is not affected.
    EXPECT_EQ(write_read_verify(*other.io[0], 1, 0, 4), 0);
    host_conn refused(dial(lt.port), false, false);
    refused.icreq();
    // No DNR: a reconnecting host keeps trying until the subsystem is back.
    EXPECT_EQ(refused.connect(open_nqn, host_a, 0, 0xFFFF).status, nvme::sc::connect_invalid_param);
    // Re-created with the same namespaces (same UUIDs): the host connects again.
    lt.tgt.add_subsystem(cfg);
    tcp_association back(lt.port, open_nqn, host_a, 1);
    EXPECT_EQ(write_read_verify(*back.io[0], 1, 0, 6), 0);
    auto desc = back.admin->identify(nvme::cns::ns_desc_list, 1).data;
    EXPECT_EQ(std::vector<uint8_t>(desc.begin() + 24, desc.begin() + 40),
              std::vector<uint8_t>(cfg.namespaces[0].uuid->begin(), cfg.namespaces[0].uuid->end()));
}

TEST(live, remove_host_drops_its_controllers_only) {
    auto cfg = test_config();
    cfg.subsystems[1].hosts.push_back(host_b);
    serve_options o;
    o.cfg = cfg;
    served_target lt(2, o);
    tcp_association a(lt.port, restricted_nqn, host_a, 1);
    tcp_association b(lt.port, restricted_nqn, host_b, 1);
    lt.tgt.remove_host(restricted_nqn, host_a);
    EXPECT_TRUE(a.admin->target_closed());
    EXPECT_TRUE(a.io[0]->target_closed());
    EXPECT_EQ(write_read_verify(*b.io[0], 1, 0, 2), 0);
    host_conn again(dial(lt.port), false, false);
    again.icreq();
    EXPECT_EQ(again.connect(restricted_nqn, host_a, 0, 0xFFFF).status,
              nvme::sc::connect_invalid_host | nvme::status_dnr);
    // Allowing any host again lets it in; disallowing drops the hosts not on the list.
    lt.tgt.update_subsystem(restricted_nqn, {true, std::nullopt, std::nullopt});
    tcp_association a2(lt.port, restricted_nqn, host_a, 1);
    lt.tgt.update_subsystem(restricted_nqn, {false, std::nullopt, std::nullopt});
    EXPECT_TRUE(a2.io[0]->target_closed());
    EXPECT_EQ(write_read_verify(*b.io[0], 1, 0, 3), 0);
}

TEST(live, drop_controller_closes_its_queues_and_lists_views) {
    served_target lt(2);
    tcp_association a(lt.port, open_nqn, host_a, 2);
    tcp_association b(lt.port, open_nqn, host_b, 1);
    auto views = lt.tgt.controllers(open_nqn);
    ASSERT_EQ(views.size(), 2u);
    const auto& va = views[0].cntlid == a.cntlid ? views[0] : views[1];
    EXPECT_EQ(va.hostnqn, host_a);
    EXPECT_EQ(va.hostid, target::derive_id(host_a));
    EXPECT_EQ(va.kato_ms, 5000u);
    ASSERT_EQ(va.queues.size(), 3u);
    EXPECT_EQ(va.queues[0].qid, 0);
    EXPECT_EQ(va.queues[0].depth, 32);
    EXPECT_EQ(va.queues[1].qid, 1);
    EXPECT_EQ(va.queues[1].depth, 128);
    EXPECT_EQ(va.queues[2].qid, 2);
    EXPECT_NE(va.queues[0].reactor, va.queues[1].reactor);  // round robin over two reactors
    EXPECT_NE(va.queues[0].connection, va.queues[1].connection);
    EXPECT_FALSE(va.peer.empty());
    lt.tgt.drop_controller(open_nqn, a.cntlid);
    EXPECT_TRUE(a.admin->target_closed());
    EXPECT_TRUE(a.io[0]->target_closed());
    EXPECT_TRUE(a.io[1]->target_closed());
    EXPECT_EQ(write_read_verify(*b.io[0], 1, 0, 3), 0);
    EXPECT_EQ(lt.tgt.controllers(open_nqn).size(), 1u);
}

TEST(live, discovery_changes_bump_genctr_raise_the_aen_and_list_referrals) {
    served_target lt(1);
    host_conn d(dial(lt.port), false, false);
    d.bring_up_admin(std::string(nvme::discovery_nqn), host_a, 0);
    ASSERT_EQ(set_aen(d, nvme::aen::cfg_discovery), 0);
    auto genctr = [&] { return as<nvme::discovery_log_header>(d.get_log(nvme::lid::discovery, 1024).data).genctr; };
    auto entries = [&] {
        auto n = as<nvme::discovery_log_header>(d.get_log(nvme::lid::discovery, 1024).data).numrec;
        auto page = d.get_log(nvme::lid::discovery, static_cast<uint32_t>(1024 + n * 1024)).data;
        std::vector<nvme::discovery_log_entry> es(n);
        std::memcpy(es.data(), page.data() + 1024, n * 1024);
        return es;
    };
    auto expect_aen = [&](const std::function<void()>& change) {
        auto aer = d.make(nvme::admin_opc::async_event);
        d.send_capsule(aer, {}, true, 0);
        const uint64_t before = genctr();
        change();
        auto ev = d.wait(aer.cid);
        ASSERT_TRUE(ev);
        EXPECT_EQ(ev->cqe.dw0, nvme::aen::discovery_changed);
        EXPECT_GT(genctr(), before);
    };
    EXPECT_EQ(entries().size(), 3u);  // one listener: discovery, open, restricted
    expect_aen([&] { lt.tgt.add_listener({"127.0.0.1", 4430}); });
    EXPECT_EQ(entries().size(), 6u);
    expect_aen([&] { lt.tgt.add_referral({"10.0.0.9", 8009}); });
    auto es = entries();
    ASSERT_EQ(es.size(), 7u);
    EXPECT_EQ(es.back().subtype, nvme::subtype_referral);
    EXPECT_EQ(std::string(nvme::fixed_string(es.back().traddr, 256)), "10.0.0.9");
    EXPECT_EQ(std::string(nvme::fixed_string(es.back().trsvcid, 32)), "8009");
    EXPECT_EQ(std::string(nvme::fixed_string(es.back().subnqn, 256)), nvme::discovery_nqn);
    expect_aen([&] { lt.tgt.remove_listener("127.0.0.1", 4420); });
    EXPECT_EQ(entries().size(), 4u);
    expect_aen([&] { lt.tgt.remove_referral("10.0.0.9", 8009); });
    EXPECT_EQ(entries().size(), 3u);
    target::subsystem_config s;
    s.nqn = "nqn.2026-11.io.ferry:new";
    s.allow_any_host = true;
    expect_aen([&] { lt.tgt.add_subsystem(s); });
    EXPECT_EQ(entries().size(), 4u);
    expect_aen([&] { lt.tgt.remove_subsystem(s.nqn); });
    expect_aen([&] { lt.tgt.add_host(restricted_nqn, host_b); });
    expect_aen([&] { lt.tgt.remove_host(restricted_nqn, host_b); });
}

TEST(live, refused_changes_change_nothing) {
    served_target lt(1);
    const std::string before = dump(lt.tgt.current_config());
    using E = target::change_errc;
    auto open_cfg = lt.tgt.current_config().subsystems[0];
    EXPECT_EQ(code_of([&] { lt.tgt.add_subsystem(open_cfg); }), E::conflict);
    EXPECT_EQ(code_of([&] { lt.tgt.remove_subsystem("nqn.2026-11.io.ferry:none"); }), E::not_found);
    EXPECT_EQ(code_of([&] { lt.tgt.update_subsystem("nqn.2026-11.io.ferry:none", {true, {}, {}}); }), E::not_found);
    EXPECT_EQ(code_of([&] { lt.tgt.update_subsystem(open_nqn, {{}, std::string(41, 'm'), {}}); }), E::invalid);
    EXPECT_EQ(code_of([&] { lt.tgt.add_namespace(open_nqn, ram_ns(1)); }), E::conflict);
    EXPECT_EQ(code_of([&] { lt.tgt.add_namespace(open_nqn, ram_ns(target::max_nsid + 1)); }), E::invalid);
    EXPECT_EQ(code_of([&] { lt.tgt.add_namespace("nqn.2026-11.io.ferry:none", ram_ns(0)); }), E::not_found);
    auto same_uuid = ram_ns(9);
    same_uuid.uuid = open_cfg.namespaces[0].uuid;
    EXPECT_EQ(code_of([&] { lt.tgt.add_namespace(open_nqn, same_uuid); }), E::conflict);
    target::namespace_config bad_file;
    bad_file.nsid = 9;
    bad_file.backend = target::backend_kind::file;
    bad_file.path = "/nonexistent-dir/ferry.img";
    EXPECT_EQ(code_of([&] { lt.tgt.add_namespace(open_nqn, bad_file); }), E::failed);
    EXPECT_EQ(code_of([&] { lt.tgt.remove_namespace(open_nqn, 2); }), E::not_found);
    EXPECT_EQ(code_of([&] { lt.tgt.resize_namespace(open_nqn, 1, 8u << 20); }), E::invalid);  // shrink
    EXPECT_EQ(code_of([&] { lt.tgt.resize_namespace(open_nqn, 1, (32u << 20) + 1); }), E::invalid);
    EXPECT_EQ(code_of([&] { lt.tgt.resize_namespace(open_nqn, 2, 32u << 20); }), E::not_found);
    EXPECT_EQ(code_of([&] { lt.tgt.add_host(restricted_nqn, host_a); }), E::conflict);
    EXPECT_EQ(code_of([&] { lt.tgt.remove_host(restricted_nqn, host_b); }), E::not_found);
    EXPECT_EQ(code_of([&] { lt.tgt.drop_controller(open_nqn, 77); }), E::not_found);
    EXPECT_EQ(code_of([&] { lt.tgt.add_listener({"127.0.0.1", 4420}); }), E::conflict);
    EXPECT_EQ(code_of([&] { lt.tgt.remove_listener("127.0.0.1", 4999); }), E::not_found);
    EXPECT_EQ(code_of([&] { lt.tgt.remove_referral("10.0.0.1", 8009); }), E::not_found);
    EXPECT_EQ(code_of([&] { lt.tgt.controllers("nqn.2026-11.io.ferry:none"); }), E::not_found);
    // Model and serial: before any host connected only.
    lt.tgt.update_subsystem(open_nqn, {{}, std::string("model-x"), std::string("serial-x")});
    {
        tcp_association a(lt.port, open_nqn, host_a, 0);
        auto ic = as<nvme::identify_ctrl>(a.admin->identify(nvme::cns::ctrl).data);
        EXPECT_EQ(std::string(ic.mn, 7), "model-x");
    }
    const std::string after_rename = dump(lt.tgt.current_config());
    EXPECT_EQ(code_of([&] { lt.tgt.update_subsystem(open_nqn, {{}, std::string("model-y"), {}}); }), E::conflict);
    EXPECT_EQ(code_of([&] { lt.tgt.update_subsystem(open_nqn, {{}, {}, std::string("serial-y")}); }), E::conflict);
    EXPECT_EQ(dump(lt.tgt.current_config()), after_rename);
    EXPECT_NE(after_rename, before);
}

TEST(live, current_config_rebuilds_the_same_target) {
    served_target lt(1);
    lt.tgt.add_namespace(open_nqn, ram_ns(0, 2u << 20));
    lt.tgt.add_referral({"10.1.2.3", 8009});
    auto cfg = lt.tgt.current_config();
    target::target again(cfg);
    EXPECT_EQ(dump(again.current_config()), dump(cfg));
    for (const auto& n : cfg.subsystems[0].namespaces) {
        EXPECT_TRUE(n.uuid);
        EXPECT_TRUE(n.nguid);
    }
}

TEST(acceptor, unlisten_while_running_and_listen_again) {
    served_target lt(1);
    const uint16_t second = lt.acc->listen({"127.0.0.1", 0});  // added while the accept thread runs
    {
        host_conn c(dial(second), false, false);
        c.bring_up_admin(open_nqn, host_a);
        lt.acc->unlisten({"127.0.0.1", second});
        // Connections accepted through it stay.
        EXPECT_EQ(c.cmd(c.make(nvme::admin_opc::keep_alive)).status, 0);
    }
    EXPECT_THROW(dial(second), std::runtime_error);
    EXPECT_THROW(lt.acc->unlisten({"127.0.0.1", second}), std::runtime_error);
    host_conn first(dial(lt.port), false, false);  // the other listener still accepts
    first.bring_up_admin(open_nqn, host_a);
}

// Issue test 6: 100 namespace add/remove cycles on a subsystem while a host does verified
// writes and reads on another namespace of it, the target on two reactors.
TEST(live, namespace_add_remove_loop_under_verified_io) {
    served_target lt(2);
    tcp_association a(lt.port, open_nqn, host_a, 2);  // I/O queue 1 on reactor 1, queue 2 on reactor 0
    std::atomic<bool> stop{false};
    std::atomic<unsigned> failures{0}, verified{0};
    std::thread io([&] {
        host_conn& q = *a.io[0];
        for (uint32_t i = 0; !stop.load(); ++i) {
            if (write_read_verify(q, 1, (i * 2) % 4000, i) != 0) failures.fetch_add(1);
            verified.fetch_add(1);
        }
    });
    unsigned new_ns_failures = 0;
    for (int cycle = 0; cycle < 100; ++cycle) {
        const uint32_t nsid = lt.tgt.add_namespace(open_nqn, ram_ns(0, 256u << 10));
        if (nsid != 2) ++new_ns_failures;
        if (write_read_verify(*a.io[1], nsid, 0, cycle) != 0) ++new_ns_failures;
        lt.tgt.remove_namespace(open_nqn, nsid);
    }
    stop.store(true);
    io.join();
    EXPECT_EQ(failures.load(), 0u);
    EXPECT_EQ(new_ns_failures, 0u);
    EXPECT_GT(verified.load(), 100u);
    EXPECT_EQ(active_list(*a.admin), (std::vector<uint32_t>{1, 3}));
}
