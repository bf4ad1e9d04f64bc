// Connect validation, properties, controller lifetime and keep-alive.
#include <gtest/gtest.h>

#include "test_host.hh"

using namespace ferry;
using namespace ferry::test;

namespace {
constexpr uint32_t ipo_data(uint16_t off) {
    return (1u << 16) | off;
}
}  // namespace

TEST(connect, admin_connect_returns_a_dynamic_cntlid) {
    harness h;
    host_conn a(h), b(h);
    a.icreq();
    b.icreq();
    auto ra = a.connect(open_nqn, host_a, 0, 0xFFFF);
    auto rb = b.connect(open_nqn, host_a, 0, 0xFFFF);  // the same host twice: a second controller
    EXPECT_EQ(ra.status, 0);
    EXPECT_EQ(rb.status, 0);
    EXPECT_NE(ra.cqe.dw0 & 0xFFFF, 0u);
    EXPECT_NE(ra.cqe.dw0 & 0xFFFF, rb.cqe.dw0 & 0xFFFF);
    EXPECT_EQ(ra.cqe.dw0 >> 16, 0u);  // no authentication required
    EXPECT_EQ(h.tgt.find_subsystem(open_nqn)->controller_count(), 2u);
}

TEST(connect, invalid_parameters_point_at_the_field) {
    harness h;
    struct tc {
        std::string sub, host;
        uint16_t qid, cntlid, sqsize;
        uint16_t status;
        uint32_t dw0;
        bool dnr = true;
    } cases[] = {
        // No such subsystem: without DNR, so that hosts of a subsystem removed and about to be
        // re-created keep reconnecting (Linux gives up on a DNR status).
        {"nqn.2026-11.io.ferry:nope", host_a, 0, 0xFFFF, 31, nvme::sc::connect_invalid_param, ipo_data(256), false},
        {open_nqn, "nqn.x", 0, 0xFFFF, 31, nvme::sc::connect_invalid_param, ipo_data(512)},  // malformed
        {open_nqn, "host-a", 0, 0xFFFF, 31, nvme::sc::connect_invalid_param, ipo_data(512)},
        {open_nqn, host_a, 0, 0xFFFF, 0, nvme::sc::connect_invalid_param, 44},
        {open_nqn, host_a, 0, 0xFFFF, 0xFFFF, nvme::sc::connect_invalid_param, 44},  // 65536 entries, not 0
        {open_nqn, host_a, 0, 0xFFFF, target::max_admin_queue_entries, nvme::sc::connect_invalid_param, 44},
        {open_nqn, host_a, 0, 7, 31, nvme::sc::connect_invalid_param, ipo_data(16)},
        // No such controller: without DNR too; its association may have ended (keep-alive) while
        // the host brought up its I/O queues, and the host then reconnects.
        {open_nqn, host_a, 1, 4242, 127, nvme::sc::connect_invalid_param, ipo_data(16), false},
        {restricted_nqn, host_b, 0, 0xFFFF, 31, nvme::sc::connect_invalid_host, 0},
        {restricted_nqn, "", 0, 0xFFFF, 31, nvme::sc::connect_invalid_host, 0},  // an allow list refuses it
    };
    for (const auto& t : cases) {
        host_conn c(h);
        c.icreq();
        auto r = c.connect(t.sub, t.host, t.qid, t.cntlid, t.sqsize);
        EXPECT_EQ(r.status, t.status | (t.dnr ? nvme::status_dnr : 0)) << t.sub << " " << t.host << " qid " << t.qid;
        EXPECT_EQ(r.cqe.dw0, t.dw0) << t.sub << " " << t.host << " qid " << t.qid;
        EXPECT_FALSE(c.conn->closing());
    }
    EXPECT_EQ(h.tgt.find_subsystem(open_nqn)->controller_count(), 0u);
}

TEST(connect, zero_hostid_and_bad_recfmt_are_rejected) {
    harness h;
    {
        host_conn c(h);
        c.icreq();
        nvme::connect_sqe s{};
        s.opcode = nvme::admin_opc::fabrics;
        s.cid = 1;
        s.fctype = nvme::fctype::connect;
        s.sqsize = 31;
        nvme::connect_data d{};
        d.cntlid = 0xFFFF;
        nvme::copy_nul_padded(d.subnqn, 256, open_nqn);
        nvme::copy_nul_padded(d.hostnqn, 256, host_a);
        std::vector<uint8_t> data(sizeof(d));
        std::memcpy(data.data(), &d, sizeof(d));
        auto r = c.cmd(reinterpret_cast<nvme::sqe&>(s), data);
        EXPECT_EQ(r.status, nvme::sc::connect_invalid_param | nvme::status_dnr);
        EXPECT_EQ(r.cqe.dw0, ipo_data(0));
        s.recfmt = 1;
        s.cid = 2;
        r = c.cmd(reinterpret_cast<nvme::sqe&>(s), data);
        EXPECT_EQ(r.status, nvme::sc::connect_incompatible_format | nvme::status_dnr);
    }
}

TEST(connect, restricted_subsystem_admits_its_host) {
    harness h;
    host_conn c(h);
    EXPECT_NO_THROW(c.bring_up_admin(restricted_nqn, host_a));
}

TEST(connect, io_queue_rules) {
    harness h;
    host_conn admin(h);
    uint16_t id = admin.bring_up_admin(open_nqn, host_a);
    // Number of queues: ask for 2.
    auto sf = admin.make(nvme::admin_opc::set_features);
    sf.cdw10 = nvme::fid::num_queues;
    sf.cdw11 = (1u << 16) | 1u;
    auto r = admin.cmd(sf);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.cqe.dw0, (1u << 16) | 1u);

    host_conn q1(h), q1again(h), q3(h), other(h), big(h);
    q1.icreq();
    EXPECT_EQ(q1.connect(open_nqn, host_a, 1, id, 127, 0).status, 0);
    q1again.icreq();
    EXPECT_EQ(q1again.connect(open_nqn, host_a, 1, id, 127, 0).status,
              nvme::sc::command_sequence_error | nvme::status_dnr);  // QID 1 exists
    // Number of Queues is fixed once an I/O queue exists, the grant unchanged.
    sf.cdw11 = (7u << 16) | 7u;
    EXPECT_EQ(admin.cmd(sf).status, nvme::sc::command_sequence_error | nvme::status_dnr);
    auto gq = admin.make(nvme::admin_opc::get_features);
    gq.cdw10 = nvme::fid::num_queues;
    EXPECT_EQ(admin.cmd(gq).cqe.dw0, (1u << 16) | 1u);
    q3.icreq();
    auto r3 = q3.connect(open_nqn, host_a, 3, id, 127, 0);
    EXPECT_EQ(r3.status, nvme::sc::connect_invalid_param | nvme::status_dnr);
    EXPECT_EQ(r3.cqe.dw0, 42u);  // QID in the SQE
    other.icreq();
    EXPECT_EQ(other.connect(open_nqn, host_b, 2, id, 127, 0).status,
              nvme::sc::connect_invalid_param | nvme::status_dnr);
    big.icreq();
    auto rb = big.connect(open_nqn, host_a, 2, id, 1023, 0);
    EXPECT_EQ(rb.status, nvme::sc::connect_invalid_param | nvme::status_dnr);
    EXPECT_EQ(rb.cqe.dw0, 44u);  // SQSIZE beyond MQES
    // SQSIZE 0xFFFF is 65536 entries: beyond MQES too (a 16-bit depth would wrap to 0).
    host_conn huge(h);
    huge.icreq();
    auto rh = huge.connect(open_nqn, host_a, 2, id, 0xFFFF, 0);
    EXPECT_EQ(rh.status, nvme::sc::connect_invalid_param | nvme::status_dnr);
    EXPECT_EQ(rh.cqe.dw0, 44u);
    EXPECT_FALSE(huge.queue().ctrl());
}

TEST(connect, empty_host_nqn_where_any_host_is_allowed) {
    // SPDK's initiator sends an empty host NQN by default; a subsystem open to any host (and
    // the discovery subsystem) takes it, with an I/O queue too.
    harness h;
    host_conn admin(h);
    const uint16_t id = admin.bring_up_admin(open_nqn, "");
    ASSERT_TRUE(admin.queue().ctrl());
    EXPECT_EQ(admin.queue().ctrl()->hostnqn, "");
    EXPECT_NE(admin.queue().ctrl()->name().find("(host <empty host NQN>)"), std::string::npos)
        << admin.queue().ctrl()->name();
    host_conn io(h);
    io.icreq();
    ASSERT_EQ(io.connect(open_nqn, "", 1, id, 127, 0).status, 0);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::flush, 1, 0, 1)).status, 0);
    // The I/O queue must name the same (empty) host as the admin queue did.
    host_conn other(h);
    other.icreq();
    EXPECT_EQ(other.connect(open_nqn, host_a, 2, id, 127, 0).status,
              nvme::sc::connect_invalid_param | nvme::status_dnr);

    host_conn disc(h);
    EXPECT_NO_THROW(disc.bring_up_admin(std::string(nvme::discovery_nqn), "", 0));
    auto hdr = disc.get_log(nvme::lid::discovery, 1024);
    ASSERT_EQ(hdr.status, 0);
    uint64_t numrec;
    std::memcpy(&numrec, hdr.data.data() + 8, 8);
    EXPECT_EQ(numrec, 2u);  // itself and the open subsystem, not the restricted one
}

TEST(properties, cap_vs_enable_and_shutdown) {
    harness h;
    host_conn c(h);
    c.icreq();
    ASSERT_EQ(c.connect(open_nqn, host_a, 0, 0xFFFF).status, 0);
    auto cap = c.property_get(nvme::reg::cap, true);
    uint64_t v = cap.cqe.dw0 | (uint64_t(cap.cqe.dw1) << 32);
    EXPECT_EQ(v & 0xFFFF, target::max_queue_entries - 1u);  // MQES
    EXPECT_EQ((v >> 37) & 1, 1u);                           // NVM command set
    EXPECT_EQ((v >> 48) & 0xF, 0u);                         // MPSMIN 4 KiB
    EXPECT_GT((v >> 24) & 0xFF, 0u);                        // TO
    // CAP in two 4-byte halves, as a host without 8-byte property access reads it.
    auto low = c.property_get(nvme::reg::cap), high = c.property_get(nvme::reg::cap + 4);
    ASSERT_EQ(low.status, 0);
    ASSERT_EQ(high.status, 0);
    EXPECT_EQ(low.cqe.dw0 | (uint64_t(high.cqe.dw0) << 32), v);
    EXPECT_EQ(c.property_get(nvme::reg::cap + 4, true).status, nvme::sc::invalid_field | nvme::status_dnr);
    EXPECT_EQ(c.property_get(nvme::reg::vs).cqe.dw0, 0x00010400u);
    EXPECT_EQ(c.property_get(nvme::reg::csts).cqe.dw0 & 1, 0u);
    // Admin commands before enable are refused.
    EXPECT_EQ(c.identify(nvme::cns::ctrl).status, nvme::sc::command_sequence_error | nvme::status_dnr);
    // CC write with EN=0 first (as recent Linux hosts do), then enable.
    const uint32_t cc = (6u << 16) | (4u << 20);
    EXPECT_EQ(c.property_set(nvme::reg::cc, cc).status, 0);
    EXPECT_EQ(c.property_set(nvme::reg::cc, cc | 1).status, 0);
    EXPECT_EQ(c.property_get(nvme::reg::csts).cqe.dw0 & 3, 1u);  // RDY, no CFS
    EXPECT_EQ(c.property_get(nvme::reg::cc).cqe.dw0, cc | 1);
    // Shutdown: SHST complete.
    EXPECT_EQ(c.property_set(nvme::reg::cc, cc | 1 | (1u << 14)).status, 0);
    EXPECT_EQ((c.property_get(nvme::reg::csts).cqe.dw0 >> 2) & 3, 2u);
    // Unknown offsets and 8-byte reads of 4-byte registers are invalid.
    EXPECT_EQ(c.property_get(0x30).status, nvme::sc::invalid_field | nvme::status_dnr);
    EXPECT_EQ(c.property_get(nvme::reg::vs, true).status, nvme::sc::invalid_field | nvme::status_dnr);
    EXPECT_EQ(c.property_set(nvme::reg::csts, 1).status, nvme::sc::invalid_field | nvme::status_dnr);
}

// A reset (CC.EN 1 to 0) deletes the I/O queues: an idle one closes on its timer tick, RDY
// clears once it is released (its commands done in the stores), and once re-enabled the host
// may set Number of Queues again and connect the same QID (as with SPDK's target; nvmet leaves
// the queues connected). A shutdown ends them the same way, SHST occurring until they are gone.
TEST(controller, reset_and_shutdown_delete_the_io_queues) {
    harness h;
    association a(h);
    host_conn &admin = a.admin, &io = a.io;
    const uint32_t cc = (6u << 16) | (4u << 20);
    auto csts = [&] { return admin.property_get(nvme::reg::csts).cqe.dw0; };
    ASSERT_EQ(admin.property_set(nvme::reg::cc, cc).status, 0);
    EXPECT_EQ(csts() & nvme::csts::rdy, nvme::csts::rdy);  // the I/O queue is still there
    io.conn->on_timer(env::now_ns());
    EXPECT_TRUE(io.conn->closing());
    EXPECT_TRUE(io.target_closed());
    EXPECT_EQ(csts() & nvme::csts::rdy, nvme::csts::rdy);  // closed, not yet released by its reactor
    ASSERT_TRUE(io.conn->reapable());
    io.conn.reset();
    EXPECT_EQ(csts() & 3, 0u);
    ASSERT_EQ(admin.property_set(nvme::reg::cc, cc | nvme::cc::en).status, 0);
    EXPECT_EQ(csts() & 3, 1u);
    auto nq = admin.make(nvme::admin_opc::set_features);
    nq.cdw10 = nvme::fid::num_queues;
    nq.cdw11 = 0x00010001;  // two of each
    EXPECT_EQ(admin.cmd(nq).status, 0);
    host_conn again(h);
    again.icreq();
    ASSERT_EQ(again.connect(open_nqn, host_a, 1, a.cntlid, 127, 0).status, 0);
    const auto d = pattern(8192, 5);
    EXPECT_EQ(again.cmd(again.rw(nvme::io_opc::write, 1, 0, 2), d).status, 0);
    EXPECT_EQ(again.cmd(again.rw(nvme::io_opc::read, 1, 0, 2), {}, 8192).data, d);
    // Number of Queues while that queue is connected: refused.
    nq.cid = admin.next_cid();
    EXPECT_EQ(admin.cmd(nq).status, nvme::sc::command_sequence_error | nvme::status_dnr);

    // Shutdown: SHST 01b while the I/O queue lives, 10b once it closed; no new I/O queue.
    ASSERT_EQ(admin.property_set(nvme::reg::cc, cc | nvme::cc::en | (1u << 14)).status, 0);
    EXPECT_EQ((csts() >> 2) & 3, 1u);
    again.conn->on_timer(env::now_ns());
    EXPECT_TRUE(again.target_closed());
    EXPECT_EQ((csts() >> 2) & 3, 1u);
    ASSERT_TRUE(again.conn->reapable());
    again.conn.reset();
    EXPECT_EQ((csts() >> 2) & 3, 2u);
    host_conn late(h);
    late.icreq();
    EXPECT_EQ(late.connect(open_nqn, host_a, 1, a.cntlid, 127, 0).status,
              nvme::sc::command_sequence_error | nvme::status_dnr);
}

TEST(properties, enable_with_wrong_queue_entry_sizes_sets_cfs) {
    harness h;
    host_conn c(h);
    c.icreq();
    ASSERT_EQ(c.connect(open_nqn, host_a, 0, 0xFFFF).status, 0);
    c.property_set(nvme::reg::cc, (5u << 16) | (4u << 20) | 1u);
    EXPECT_EQ(c.property_get(nvme::reg::csts).cqe.dw0 & 3, 2u);  // CFS, not RDY
}

TEST(controller, keep_alive_timeout_tears_down_all_queues) {
    harness h;
    association a(h, 1000);
    host_conn &admin = a.admin, &io = a.io;
    auto sub = h.tgt.find_subsystem(open_nqn);
    EXPECT_EQ(sub->controller_count(), 1u);

    const uint64_t now = env::now_ns();
    admin.conn->on_timer(now + 500'000'000);  // within KATO: nothing happens
    EXPECT_FALSE(admin.conn->closing());
    admin.conn->on_timer(now + 1'500'000'000);
    EXPECT_TRUE(admin.conn->closing());
    EXPECT_EQ(sub->controller_count(), 0u);
    EXPECT_TRUE(admin.target_closed());
    // The I/O queue, possibly on another reactor, notices on its next timer tick.
    io.conn->on_timer(now + 1'600'000'000);
    EXPECT_TRUE(io.conn->closing());
    EXPECT_TRUE(io.target_closed());
    // A new association works.
    host_conn again(h);
    EXPECT_NO_THROW(again.bring_up_admin(open_nqn, host_a));
}

TEST(controller, an_io_queue_outliving_its_association_closes_rather_than_fail_commands) {
    // The keep-alive expires on the admin queue; the I/O queues, possibly on other reactors,
    // close on their own next timer tick. A command that reaches one before that tick must not
    // get an error with DNR (Linux would fail the I/O to the application): the queue closes at
    // once and answers nothing, and the host retries the command on its next association.
    harness h;
    association a(h, 1000);
    host_conn io2(h);
    io2.icreq();
    ASSERT_EQ(io2.connect(open_nqn, host_a, 2, a.cntlid, 127, 0).status, 0);
    // A write whose R2T went out while the association lived; its data comes after its end.
    const auto data = pattern(16384, 7);
    const auto w = io2.rw(nvme::io_opc::write, 1, 0, 4);
    io2.send_capsule(w, data, false, static_cast<uint32_t>(data.size()));

    a.admin.conn->on_timer(env::now_ns() + 1'500'000'000);
    ASSERT_TRUE(a.admin.conn->closing());
    // A write, checked as it arrives (a small read, checked only as it executes: io_test.cc).
    const auto w1 = a.io.rw(nvme::io_opc::write, 1, 8, 4);
    a.io.send_capsule(w1, data, false, static_cast<uint32_t>(data.size()));
    EXPECT_FALSE(a.io.wait(w1.cid, data)) << "answered";
    EXPECT_TRUE(a.io.r2ts.empty());
    EXPECT_FALSE(a.io.last_term);
    EXPECT_TRUE(a.io.target_closed());
    // The write whose R2T went out before: its data, checked again once it is there.
    EXPECT_FALSE(io2.wait(w.cid, data)) << "answered";
    EXPECT_EQ(io2.r2ts.size(), 1u);
    EXPECT_FALSE(io2.last_term);
    EXPECT_TRUE(io2.target_closed());
    // An I/O queue the host connects to the ended controller: refused without DNR, so that
    // Linux reconnects rather than delete the controller.
    host_conn late(h);
    late.icreq();
    const auto c = late.connect(open_nqn, host_a, 3, a.cntlid, 127, 0);
    EXPECT_EQ(c.status, nvme::sc::connect_invalid_param);
    EXPECT_EQ(c.cqe.dw0, ipo_data(offsetof(nvme::connect_data, cntlid)));
}

TEST(controller, a_controller_torn_down_meanwhile_refuses_io_queue_connects_without_dnr) {
    harness h;
    host_conn admin(h);
    const uint16_t id = admin.bring_up_admin(open_nqn, host_a);
    // Dropped (management API, subsystem removal): its queues close on their next timer tick.
    admin.queue().ctrl()->drop(target::teardown::dropped);
    host_conn io(h);
    io.icreq();
    const auto c = io.connect(open_nqn, host_a, 1, id, 127, 0);
    EXPECT_EQ(c.status, nvme::sc::connect_invalid_param);
    EXPECT_EQ(c.cqe.dw0, ipo_data(offsetof(nvme::connect_data, cntlid)));
    EXPECT_FALSE(io.queue().ctrl());
}

// Another host naming a live controller is no race with a teardown: refused with DNR (a retry
// cannot succeed), and the controller goes on serving its own host.
TEST(controller, an_io_queue_connect_naming_another_hosts_controller_keeps_dnr) {
    harness h;
    host_conn admin(h);
    const uint16_t id = admin.bring_up_admin(open_nqn, host_a);
    host_conn io(h);
    io.icreq();
    const auto c = io.connect(open_nqn, host_b, 1, id, 127, 0);
    EXPECT_EQ(c.status, nvme::sc::connect_invalid_param | nvme::status_dnr);
    EXPECT_EQ(c.cqe.dw0, ipo_data(offsetof(nvme::connect_data, cntlid)));
    EXPECT_FALSE(io.queue().ctrl());
    EXPECT_FALSE(admin.conn->closing());
    EXPECT_TRUE(admin.queue().ctrl()->ready.load());
}

TEST(controller, io_traffic_counts_as_keep_alive) {
    harness h;
    association a(h, 1000);
    host_conn &admin = a.admin, &io = a.io;
    // The last traffic was 10 s ago: without a refresh, the 1 s KATO has long expired.
    auto& last = admin.queue().ctrl()->last_traffic_ns;
    last.store(env::now_ns() - 10'000'000'000ull);
    // A command on the I/O queue refreshes the controller's traffic time.
    io.cmd(io.rw(nvme::io_opc::flush, 1, 0, 1));
    const uint64_t after_io = env::now_ns();
    admin.conn->on_timer(after_io + 900'000'000);
    EXPECT_FALSE(admin.conn->closing());
    // And the same clock without that command: the timer fires.
    last.store(after_io - 10'000'000'000ull);
    admin.conn->on_timer(after_io + 900'000'000);
    EXPECT_TRUE(admin.conn->closing());
}

TEST(controller, io_commands_do_not_write_the_shared_traffic_time_every_time) {
    // The traffic time is the controller's, shared by queues on several reactors: a command
    // stores it only when it is older than the 100 ms granularity.
    harness h;
    association a(h, 1000);
    auto& last = a.admin.queue().ctrl()->last_traffic_ns;
    const uint64_t recent = env::now_ns() - 20'000'000;
    last.store(recent);
    a.io.cmd(a.io.rw(nvme::io_opc::flush, 1, 0, 1));
    EXPECT_EQ(last.load(), recent);
}

TEST(controller, closing_the_admin_queue_frees_the_controller) {
    harness h;
    auto sub = h.tgt.find_subsystem(open_nqn);
    {
        host_conn admin(h);
        admin.bring_up_admin(open_nqn, host_a);
        EXPECT_EQ(sub->controller_count(), 1u);
        admin.conn->close("test");
    }
    EXPECT_EQ(sub->controller_count(), 0u);
}

TEST(controller, disconnect_only_on_io_queues) {
    harness h;
    host_conn admin(h);
    uint16_t id = admin.bring_up_admin(open_nqn, host_a);
    nvme::fabrics_sqe d{};
    d.opcode = nvme::admin_opc::fabrics;
    d.cid = 99;
    d.fctype = nvme::fctype::disconnect;
    EXPECT_EQ(admin.cmd(reinterpret_cast<nvme::sqe&>(d)).status, nvme::sc::invalid_queue_type | nvme::status_dnr);
    host_conn io(h);
    io.icreq();
    ASSERT_EQ(io.connect(open_nqn, host_a, 1, id, 127, 0).status, 0);
    auto bad_format = d;  // RECFMT 1: no such record format; the queue stays
    bad_format.cid = 98;
    reinterpret_cast<nvme::sqe&>(bad_format).cdw10 = 1;
    EXPECT_EQ(io.cmd(reinterpret_cast<nvme::sqe&>(bad_format)).status,
              nvme::sc::connect_incompatible_format | nvme::status_dnr);
    EXPECT_FALSE(io.conn->closing());
    EXPECT_EQ(io.cmd(reinterpret_cast<nvme::sqe&>(d)).status, 0);
    EXPECT_TRUE(io.target_closed());
    // The qid is free again.
    host_conn io2(h);
    io2.icreq();
    EXPECT_EQ(io2.connect(open_nqn, host_a, 1, id, 127, 0).status, 0);
}
