// An SSD namespace served by a real reactor over TCP, on a software model of the controller
// (nvme_model.hh, registered under a made-up PCI address): a controller whose admin queue
// stalls must not freeze the reactor that waits for one of its hardware queues.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

#include "nvme/pcie.hh"
#include "test_host.hh"
#include "tests/unit/nvme_model.hh"
#include "transport/listener.hh"
#include "transport/reactor.hh"

namespace ferry::test {
namespace {

constexpr const char* ssd_nqn = "nqn.2026-11.io.ferry:ssd";

// Subsystem ssd_nqn, NSIDs 1..namespaces on the namespaces of the model controller `bdf`.
target::target_config ssd_config(const std::string& bdf, uint32_t namespaces = 1) {
    target::target_config cfg;
    target::subsystem_config s;
    s.nqn = ssd_nqn;
    s.allow_any_host = true;
    for (uint32_t i = 1; i <= namespaces; ++i) {
        target::namespace_config n;
        n.nsid = i;
        n.backend = target::backend_kind::pcie;
        n.pcie_address = bdf;
        n.pcie_nsid = i;
        s.namespaces.push_back(n);
    }
    cfg.subsystems.push_back(s);
    return cfg;
}

// A model SSD behind one reactor (so every connection shares the reactor thread).
struct served_ssd {
    test::nvme_model* model = nullptr;
    std::shared_ptr<nvme::pcie_controller> ctrl;
    std::unique_ptr<target::target> tgt;
    std::unique_ptr<transport::reactor> reactor;
    std::unique_ptr<transport::acceptor> acc;
    uint16_t port = 0;

    served_ssd(const std::string& bdf, nvme::pcie_controller_options o, uint32_t namespaces = 1) {
        test::nvme_model::params p;
        p.blocks = 1024;
        p.namespaces = namespaces;
        auto m = std::make_unique<test::nvme_model>(p);
        model = m.get();
        o.health_interval_ms = 10;
        ctrl = std::make_shared<nvme::pcie_controller>(bdf, std::move(m), o);
        ctrl->start();
        nvme::register_pcie_controller(bdf, ctrl);
        tgt = std::make_unique<target::target>(ssd_config(bdf, namespaces));
        transport::reactor_options ro;
        ro.pool_bytes = 16u << 20;
        reactor = std::make_unique<transport::reactor>(0, ro);
        acc = std::make_unique<transport::acceptor>(std::vector<transport::reactor*>{reactor.get()}, *tgt, 64);
        port = acc->listen({"127.0.0.1", 0});
        reactor->start();
        acc->start();
    }
    ~served_ssd() {
        acc->stop();
        reactor->stop();
    }
};

// True if nothing has arrived on `fd` (the target has not answered yet).
bool nothing_to_read(int fd) {
    char b;
    return ::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct latencies {
    std::vector<uint64_t> ns;
    uint64_t p99() {
        std::sort(ns.begin(), ns.end());
        return ns.empty() ? ~0ull : ns[ns.size() * 99 / 100];
    }
};

// 4 KiB reads on `q` for `ms` milliseconds; every one must succeed.
void read_for(host_conn& q, uint64_t ms, latencies& lat) {
    const uint64_t end = env::now_ns() + ms * 1'000'000;
    uint64_t lba = 0;
    while (env::now_ns() < end) {
        const uint64_t t0 = env::now_ns();
        auto r = q.cmd(q.rw(nvme::io_opc::read, 1, lba++ % 1024, 1), {}, 4096);
        lat.ns.push_back(env::now_ns() - t0);
        ASSERT_EQ(r.status, 0) << "read " << lat.ns.size();
    }
}

// The admin queue of the SSD stalls for 30 s (as during a long firmware operation) while a
// host connects an I/O queue, which needs a hardware queue from that admin queue. Another
// connection on the same reactor keeps doing I/O meanwhile; the parked Connect completes
// when the admin queue moves again.
TEST(PcieReactor, StalledAdminQueueDoesNotFreezeTheReactor) {
    nvme::pcie_controller_options o;
    o.admin_timeout_ms = 60'000;  // the stall ends before the command times out
    served_ssd s("model:stall", o);
    host_conn admin(dial(s.port), false, false);
    const uint16_t cntlid = admin.bring_up_admin(ssd_nqn, host_a, 0);
    host_conn q1(dial(s.port), false, false);
    q1.icreq();
    ASSERT_EQ(q1.connect(ssd_nqn, host_a, 1, cntlid).status, 0);

    s.model->stall_admin = true;
    const int q2_fd = dial(s.port);
    host_conn q2(q2_fd, false, false);
    q2.icreq();
    const uint16_t connect_cid = q2.send_connect(ssd_nqn, host_a, 2, cntlid);
    EXPECT_EQ(s.reactor->connection_count(), 3u);  // all on the one reactor

    latencies lat;
    read_for(q1, 30'000, lat);
    EXPECT_TRUE(nothing_to_read(q2_fd)) << "the Connect was answered while the admin queue was stalled";
    const uint64_t p99 = lat.p99();
    EXPECT_LT(p99, static_cast<uint64_t>(5'000'000 * timing_slack))
        << lat.ns.size() << " reads, p99 " << p99 / 1000 << " us";
    EXPECT_GT(lat.ns.size(), 1000u);

    s.model->stall_admin = false;
    auto r = q2.wait(connect_cid);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 0);
    EXPECT_EQ(s.model->live_io_queues(), 2u);
    auto w = q2.cmd(q2.rw(nvme::io_opc::read, 1, 5, 1), {}, 4096);
    EXPECT_EQ(w.status, 0);
}

// The same with an admin timeout shorter than the stall: the Connect fails cleanly
// (Controller Busy, DNR), the controller is reset (the late creation must not land in freed
// memory) and serves new queues afterwards.
TEST(PcieReactor, AdminTimeoutFailsTheConnectCleanly) {
    nvme::pcie_controller_options o;
    o.admin_timeout_ms = 300;
    served_ssd s("model:timeout", o);
    host_conn admin(dial(s.port), false, false);
    const uint16_t cntlid = admin.bring_up_admin(ssd_nqn, host_a, 0);
    host_conn q1(dial(s.port), false, false);
    q1.icreq();
    ASSERT_EQ(q1.connect(ssd_nqn, host_a, 1, cntlid).status, 0);

    s.model->stall_admin = true;
    host_conn q2(dial(s.port), false, false);
    q2.icreq();
    const uint16_t connect_cid = q2.send_connect(ssd_nqn, host_a, 2, cntlid);
    latencies lat;
    read_for(q1, 200, lat);  // shorter than the admin timeout: the Connect is still parked
    auto r = q2.wait(connect_cid);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, nvme::sc::connect_ctrl_busy | nvme::status_dnr);
    EXPECT_GE(s.model->disables.load(), 1u);  // reset after the timed-out admin command
    const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
    while (s.ctrl->state() != nvme::controller_state::live && env::now_ns() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    host_conn q3(dial(s.port), false, false);
    q3.icreq();
    ASSERT_EQ(q3.connect(ssd_nqn, host_a, 3, cntlid).status, 0);
    EXPECT_EQ(q3.cmd(q3.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096).status, 0);
}

// The controller is dropped (management API) while an I/O queue's Connect waits for its
// hardware queue: the Connect is refused without DNR, so that Linux reconnects rather than
// delete the controller and fail its namespaces' I/O.
TEST(PcieReactor, ConnectOfAControllerTornDownMeanwhileIsRefusedWithoutDnr) {
    nvme::pcie_controller_options o;
    o.admin_timeout_ms = 60'000;
    served_ssd s("model:dropped", o);
    host_conn admin(dial(s.port), false, false);
    const uint16_t cntlid = admin.bring_up_admin(ssd_nqn, host_a, 0);
    s.model->stall_admin = true;
    host_conn q1(dial(s.port), false, false);
    q1.icreq();
    const uint16_t connect_cid = q1.send_connect(ssd_nqn, host_a, 1, cntlid);
    // Parked once its hardware queue's creation waits on the stalled admin queue.
    for (int i = 0; i < 5000 && s.model->admin_commands_waiting() == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_GT(s.model->admin_commands_waiting(), 0u) << "the Connect never asked the SSD for a queue";
    s.tgt->drop_controller(ssd_nqn, cntlid);
    s.model->stall_admin = false;
    auto r = q1.wait(connect_cid);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, nvme::sc::connect_ctrl_busy);
    EXPECT_TRUE(admin.target_closed());  // its admin queue went on its timer tick
}

// A closed I/O queue keeps its connection (and so the buffers its commands used) until the
// SSD has deleted the hardware queue; the deletion runs on the admin thread, not the reactor.
TEST(PcieTarget, ClosedQueueLivesUntilTheSsdDeletedItsHardwareQueue) {
    test::nvme_model::params p;
    p.blocks = 1024;
    auto m = std::make_unique<test::nvme_model>(p);
    auto* model = m.get();
    nvme::pcie_controller_options o;
    o.health_interval_ms = 10;
    auto ctrl = std::make_shared<nvme::pcie_controller>("model:teardown", std::move(m), o);
    ctrl->start();
    nvme::register_pcie_controller("model:teardown", ctrl);
    harness h(ssd_config("model:teardown"));
    host_conn admin(h);
    const uint16_t cntlid = admin.bring_up_admin(ssd_nqn, host_a, 0);
    host_conn q(h);
    q.icreq();
    ASSERT_EQ(q.connect(ssd_nqn, host_a, 1, cntlid).status, 0);
    ASSERT_EQ(q.cmd(q.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096).status, 0);
    EXPECT_EQ(model->live_io_queues(), 1u);

    model->stall_admin = true;
    q.conn->close("test closes the queue");
    const uint64_t stall_end = env::now_ns() + 200'000'000;
    while (env::now_ns() < stall_end) {
        q.conn->handler()->poll();  // never blocks, however long the admin queue stalls
        ASSERT_FALSE(q.conn->reapable()) << "reapable while the SSD still has the hardware queue";
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(model->live_io_queues(), 1u);
    model->stall_admin = false;
    const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
    while (!q.conn->reapable() && env::now_ns() < deadline) {
        q.conn->handler()->poll();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_TRUE(q.conn->reapable());
    EXPECT_EQ(model->live_io_queues(), 0u);
}

// Two namespaces of one SSD share each host queue's hardware queue pair. Removing one of them
// live must not cut the other off on that queue; the hardware queue stays until the last goes.
TEST(PcieTarget, RemovingOneNamespaceOfAnSsdKeepsItsSiblingServed) {
    served_ssd s("model:siblings", {}, 2);
    host_conn admin(dial(s.port), false, false);
    const uint16_t cntlid = admin.bring_up_admin(ssd_nqn, host_a, 0);
    host_conn q(dial(s.port), false, false);
    q.icreq();
    ASSERT_EQ(q.connect(ssd_nqn, host_a, 1, cntlid, 31, 0).status, 0);
    EXPECT_EQ(s.model->live_io_queues(), 1u);  // one hardware queue for both namespaces
    ASSERT_EQ(q.cmd(q.rw(nvme::io_opc::write, 2, 0, 1), pattern(4096, 1)).status, 0);

    s.tgt->remove_namespace(ssd_nqn, 1);
    EXPECT_EQ(q.cmd(q.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096).status,
              nvme::sc::invalid_namespace | nvme::status_dnr);
    for (uint32_t i = 0; i < 32; ++i) {
        const auto data = pattern(4096, 100 + i);
        ASSERT_EQ(q.cmd(q.rw(nvme::io_opc::write, 2, i, 1), data).status, 0) << "write " << i;
        auto r = q.cmd(q.rw(nvme::io_opc::read, 2, i, 1), {}, 4096);
        ASSERT_EQ(r.status, 0) << "read " << i;
        EXPECT_EQ(r.data, data) << "read " << i;
    }
    EXPECT_EQ(s.model->live_io_queues(), 1u);
}

}  // namespace
}  // namespace ferry::test

namespace ferry::test {
// The model SSD takes 128 KiB per command (MDTS 5) and refuses more; the target still offers
// 8 MiB and splits a 1 MiB write and read into pieces the SSD takes.
TEST(PcieTarget, OneMiBThroughTheTargetToAnSsdWith128KiBMdts) {
    served_ssd s("model:split", nvme::pcie_controller_options{});
    ASSERT_EQ(s.ctrl->max_transfer_bytes(), 128u << 10);
    host_conn admin(dial(s.port), false, false);
    const uint16_t cntlid = admin.bring_up_admin(ssd_nqn, host_a, 0);
    auto idc = admin.identify(nvme::cns::ctrl);
    ASSERT_EQ(idc.status, 0);
    nvme::identify_ctrl ic;
    std::memcpy(&ic, idc.data.data(), sizeof(ic));
    EXPECT_EQ(ic.mdts, 11);
    host_conn q(dial(s.port), false, false);
    q.icreq();
    ASSERT_EQ(q.connect(ssd_nqn, host_a, 1, cntlid).status, 0);
    auto d = pattern(1u << 20, 9);
    ASSERT_EQ(q.cmd(q.rw(nvme::io_opc::write, 1, 8, 256), d, 0, false).status, 0);
    EXPECT_EQ(std::memcmp(s.model->media() + 8 * 4096, d.data(), d.size()), 0);
    auto r = q.cmd(q.rw(nvme::io_opc::read, 1, 8, 256), {}, 1u << 20);
    ASSERT_EQ(r.status, 0);
    EXPECT_EQ(r.data, d);
}
}  // namespace ferry::test
