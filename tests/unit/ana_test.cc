// ANA (asymmetric namespace access) over the in-process host: one target, two listeners
// (127.0.0.1:4420 and :4421), a controller through each. Identify fields, the ANA log page
// (RGO, partial reads), ANA path errors on I/O, the ANA change AEN, and the REST validation.
#include "target/ana.hh"

#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "test_host.hh"

using namespace ferry;
using namespace ferry::test;

namespace {

template <typename T>
T as(const std::vector<uint8_t>& d, size_t off = 0) {
    T v{};
    std::memcpy(&v, d.data() + off, sizeof(T));
    return v;
}

target::target_config two_listeners() {
    target::target_config cfg = test_config();
    cfg.listeners.push_back({"127.0.0.1", 4421});
    cfg.subsystems[0].namespaces[1].ana_group = 2;  // NSID 3 in group 2, NSID 1 in group 1
    return cfg;
}

// An association of host_a with the open subsystem through the listener on `port`.
struct path {
    host_conn admin;
    host_conn io;
    uint16_t cntlid = 0;
    path(harness& h, uint16_t port) : admin(h, false, false, port), io(h, false, false, port) {
        cntlid = admin.bring_up_admin(open_nqn, host_a);
        io.icreq();
        if (io.connect(open_nqn, host_a, 1, cntlid, 31, 0).status) throw std::runtime_error("I/O connect failed");
    }
    uint16_t write(uint32_t nsid) {
        return io.cmd(io.rw(nvme::io_opc::write, nsid, 0, 1), pattern(nsid == 3 ? 512 : 4096, nsid)).status;
    }
    uint16_t read(uint32_t nsid) {
        return io.cmd(io.rw(nvme::io_opc::read, nsid, 0, 1), {}, nsid == 3 ? 512 : 4096).status;
    }
    uint16_t set_aen(uint32_t mask) {
        auto s = admin.make(nvme::admin_opc::set_features);
        s.cdw10 = nvme::fid::async_event;
        s.cdw11 = mask;
        return admin.cmd(s).status;
    }
    response ana_log(uint32_t len, uint64_t offset = 0, bool rgo = false) {
        auto c = admin.make(nvme::admin_opc::get_log_page);
        const uint32_t numd = len / 4 - 1;
        c.cdw10 = nvme::lid::ana | (rgo ? 1u << 8 : 0) | ((numd & 0xFFFF) << 16);
        c.cdw11 = numd >> 16;
        c.cdw12 = static_cast<uint32_t>(offset);
        c.cdw13 = static_cast<uint32_t>(offset >> 32);
        return admin.cmd(c, {}, len);
    }
};

struct group_desc {
    uint32_t group = 0;
    uint8_t state = 0;
    uint64_t chgcnt = 0;
    std::vector<uint32_t> nsids;
};
struct parsed_log {
    uint64_t chgcnt = 0;
    std::vector<group_desc> groups;
};
parsed_log parse(const std::vector<uint8_t>& p) {
    parsed_log l;
    l.chgcnt = as<uint64_t>(p, 0);
    const uint16_t n = as<uint16_t>(p, 8);
    size_t at = 16;
    for (uint16_t i = 0; i < n; ++i) {
        group_desc g;
        g.group = as<uint32_t>(p, at);
        const uint32_t count = as<uint32_t>(p, at + 4);
        g.chgcnt = as<uint64_t>(p, at + 8);
        g.state = p[at + 16];
        for (uint32_t k = 0; k < count; ++k) g.nsids.push_back(as<uint32_t>(p, at + 32 + 4 * k));
        at += 32 + 4 * count;
        l.groups.push_back(g);
    }
    return l;
}

constexpr uint8_t optimized = 1, inaccessible = 3;

}  // namespace

TEST(ana, identify_reports_ana_capabilities_and_groups) {
    harness h(two_listeners());
    path p(h, 4420);
    auto id = as<nvme::identify_ctrl>(p.admin.identify(nvme::cns::ctrl).data);
    EXPECT_EQ(id.cmic, 0x0B);  // multi-port, multi-controller, ANA reporting
    EXPECT_TRUE(id.oaes & (1u << 11));
    EXPECT_EQ(id.anatt, 10);
    EXPECT_EQ(id.anacap, 0x1F);
    EXPECT_EQ(id.anagrpmax, target::max_ana_groups);
    EXPECT_EQ(id.nanagrpid, target::max_ana_groups);
    EXPECT_GT(id.mnan, 0u);
    EXPECT_LE(id.mnan, id.nn);
    auto ns1 = as<nvme::identify_ns>(p.admin.identify(nvme::cns::ns, 1).data);
    auto ns3 = as<nvme::identify_ns>(p.admin.identify(nvme::cns::ns, 3).data);
    EXPECT_EQ(ns1.anagrpid, 1u);
    EXPECT_EQ(ns3.anagrpid, 2u);
    EXPECT_EQ(ns1.nmic & 1, 1);
    // The discovery controller reports no ANA.
    host_conn d(h);
    d.bring_up_admin(std::string(nvme::discovery_nqn), host_a);
    auto did = as<nvme::identify_ctrl>(d.identify(nvme::cns::ctrl).data);
    EXPECT_EQ(did.cmic & 0x08, 0);
    EXPECT_EQ(did.anagrpmax, 0u);
}

TEST(ana, log_page_lists_groups_per_listener_with_rgo_and_partial_reads) {
    harness h(two_listeners());
    h.tgt.set_ana_state("127.0.0.1", 4421, 2, target::ana_state::inaccessible);
    path p0(h, 4420), p1(h, 4421);
    auto l0 = parse(p0.ana_log(4096).data);
    ASSERT_EQ(l0.groups.size(), 2u);
    EXPECT_EQ(l0.groups[0].group, 1u);
    EXPECT_EQ(l0.groups[0].nsids, std::vector<uint32_t>{1});
    EXPECT_EQ(l0.groups[0].state, optimized);
    EXPECT_EQ(l0.groups[1].group, 2u);
    EXPECT_EQ(l0.groups[1].nsids, std::vector<uint32_t>{3});
    EXPECT_EQ(l0.groups[1].state, optimized);
    EXPECT_EQ(l0.groups[1].chgcnt, l0.chgcnt);
    auto l1 = parse(p1.ana_log(4096).data);
    ASSERT_EQ(l1.groups.size(), 2u);
    EXPECT_EQ(l1.groups[0].state, optimized);
    EXPECT_EQ(l1.groups[1].state, inaccessible);  // this listener's view
    EXPECT_EQ(l1.chgcnt, l0.chgcnt);

    // RGO: descriptors without NSIDs.
    auto rgo = p1.ana_log(4096, 0, true).data;
    auto lr = parse(rgo);
    ASSERT_EQ(lr.groups.size(), 2u);
    EXPECT_TRUE(lr.groups[0].nsids.empty());
    EXPECT_EQ(lr.groups[1].group, 2u);
    EXPECT_EQ(lr.groups[1].state, inaccessible);
    EXPECT_EQ(as<uint32_t>(rgo, 16 + 32), 2u);  // second descriptor right after the first (no NSIDs)

    // Partial reads: the page at an offset is the whole page's bytes from there.
    auto whole = p1.ana_log(4096).data;
    auto tail = p1.ana_log(64, 48).data;
    ASSERT_EQ(tail.size(), 64u);
    EXPECT_TRUE(std::equal(tail.begin(), tail.end(), whole.begin() + 48));
    auto head = p1.ana_log(16).data;
    EXPECT_EQ(as<uint16_t>(head, 8), 2u);
    EXPECT_EQ(p1.ana_log(4, 8192).status, nvme::sc::invalid_field | nvme::status_dnr);  // past the end

    // Membership: a namespace moved to group 3 is listed there, and the count moved.
    h.tgt.set_namespace_ana_group(open_nqn, 1, 3);
    auto moved = parse(p0.ana_log(4096).data);
    ASSERT_EQ(moved.groups.size(), 2u);
    EXPECT_EQ(moved.groups[0].group, 2u);
    EXPECT_EQ(moved.groups[1].group, 3u);
    EXPECT_EQ(moved.groups[1].nsids, std::vector<uint32_t>{1});
    EXPECT_GT(moved.chgcnt, l0.chgcnt);
    EXPECT_EQ(as<nvme::identify_ns>(p0.admin.identify(nvme::cns::ns, 1).data).anagrpid, 3u);
}

TEST(ana, io_on_an_inaccessible_path_fails_with_path_status_the_other_path_serves) {
    harness h(two_listeners());
    path p0(h, 4420), p1(h, 4421);
    EXPECT_EQ(p0.write(1), 0);
    EXPECT_EQ(p1.write(1), 0);
    h.tgt.set_ana_state("127.0.0.1", 4420, 1, target::ana_state::inaccessible);
    // 302h without DNR: the host retries on another path.
    EXPECT_EQ(p0.write(1), nvme::sc::ana_inaccessible);
    EXPECT_EQ(p0.read(1), nvme::sc::ana_inaccessible);
    EXPECT_EQ(p0.read(3), 0);  // group 2 stays optimized through this listener
    EXPECT_EQ(p1.write(1), 0);
    EXPECT_EQ(p1.read(1), 0);
    // Admin commands still work on that path.
    EXPECT_EQ(p0.admin.identify(nvme::cns::ns, 1).status, 0);
    h.tgt.set_ana_state("127.0.0.1", 4420, 1, target::ana_state::persistent_loss);
    EXPECT_EQ(p0.write(1), nvme::sc::ana_persistent_loss);
    h.tgt.set_ana_state("127.0.0.1", 4420, 1, target::ana_state::non_optimized);
    EXPECT_EQ(p0.read(1), 0);
    // A namespace moved into a group that is inaccessible here follows its group.
    h.tgt.set_ana_state("127.0.0.1", 4420, 5, target::ana_state::inaccessible);
    EXPECT_EQ(p0.read(3), 0);
    h.tgt.set_namespace_ana_group(open_nqn, 3, 5);
    EXPECT_EQ(p0.read(3), nvme::sc::ana_inaccessible);
    EXPECT_EQ(p1.read(3), 0);
}

TEST(ana, state_change_sends_the_aen_to_the_controllers_of_that_listener) {
    harness h(two_listeners());
    path p0(h, 4420), p1(h, 4421);
    ASSERT_EQ(p0.set_aen(nvme::aen::cfg_ana), 0);
    ASSERT_EQ(p1.set_aen(nvme::aen::cfg_ana), 0);
    auto aer0 = p0.admin.make(nvme::admin_opc::async_event);
    p0.admin.send_capsule(aer0, {}, true, 0);
    auto aer1 = p1.admin.make(nvme::admin_opc::async_event);
    p1.admin.send_capsule(aer1, {}, true, 0);
    const uint64_t before = parse(p1.ana_log(4096).data).chgcnt;

    h.tgt.set_ana_state("127.0.0.1", 4421, 1, target::ana_state::inaccessible);
    // The admin queue takes the notice at its next command: the AER completes first.
    auto ka1 = p1.admin.make(nvme::admin_opc::keep_alive);
    p1.admin.send_capsule(ka1, {}, true, 0);
    auto ev = p1.admin.wait(aer1.cid);
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->status, 0);
    EXPECT_EQ(ev->cqe.dw0, nvme::aen::ana_changed);  // notice, info 03h, log page 0Ch
    ASSERT_TRUE(p1.admin.wait(ka1.cid));
    auto l = parse(p1.ana_log(4096).data);
    EXPECT_GT(l.chgcnt, before);
    EXPECT_EQ(l.groups[0].state, inaccessible);

    // The other listener's controller saw no change: its AER stays parked.
    auto ka0 = p0.admin.make(nvme::admin_opc::keep_alive);
    p0.admin.send_capsule(ka0, {}, true, 0);
    auto r0 = p0.admin.wait(ka0.cid);  // throws if the AER answered first
    ASSERT_TRUE(r0);
    EXPECT_EQ(r0->status, 0);

    // Not enabled (Set Features 0Bh without bit 11): no AEN.
    ASSERT_EQ(p1.set_aen(nvme::aen::cfg_ns_attr), 0);
    auto aer1b = p1.admin.make(nvme::admin_opc::async_event);
    p1.admin.send_capsule(aer1b, {}, true, 0);
    h.tgt.set_ana_state("127.0.0.1", 4421, 1, target::ana_state::optimized);
    auto ka1b = p1.admin.make(nvme::admin_opc::keep_alive);
    p1.admin.send_capsule(ka1b, {}, true, 0);
    ASSERT_TRUE(p1.admin.wait(ka1b.cid));

    // A namespace moving group is a membership change: every controller of the subsystem.
    h.tgt.set_namespace_ana_group(open_nqn, 3, 4);
    auto ka0b = p0.admin.make(nvme::admin_opc::keep_alive);
    p0.admin.send_capsule(ka0b, {}, true, 0);
    auto ev0 = p0.admin.wait(aer0.cid);
    ASSERT_TRUE(ev0);
    EXPECT_EQ(ev0->cqe.dw0, nvme::aen::ana_changed);
    ASSERT_TRUE(p0.admin.wait(ka0b.cid));
}

TEST(ana, control_path_refuses_bad_groups_and_listeners) {
    harness h(two_listeners());
    auto code = [](const std::function<void()>& f) {
        try {
            f();
        } catch (const target::change_error& e) {
            return e.code;
        }
        return target::change_errc::failed;
    };
    using ec = target::change_errc;
    EXPECT_EQ(code([&] { h.tgt.set_ana_state("127.0.0.1", 4420, 0, target::ana_state::inaccessible); }), ec::invalid);
    EXPECT_EQ(code([&] { h.tgt.set_ana_state("127.0.0.1", 4420, 33, target::ana_state::inaccessible); }), ec::invalid);
    EXPECT_EQ(code([&] { h.tgt.set_ana_state("127.0.0.1", 4499, 1, target::ana_state::inaccessible); }), ec::not_found);
    EXPECT_EQ(code([&] { h.tgt.set_namespace_ana_group(open_nqn, 1, 0); }), ec::invalid);
    EXPECT_EQ(code([&] { h.tgt.set_namespace_ana_group(open_nqn, 9, 2); }), ec::not_found);
    target::namespace_config n;
    n.nsid = 9;
    n.size_bytes = 1 << 20;
    n.ana_group = 40;
    EXPECT_EQ(code([&] { h.tgt.add_namespace(open_nqn, n); }), ec::invalid);
    // ANA Change is transitional: a group left in it would have Linux reset the controllers of
    // that listener every 2 x ANATT. Refused, and the group keeps its state.
    h.tgt.set_ana_state("127.0.0.1", 4420, 1, target::ana_state::inaccessible);
    EXPECT_EQ(code([&] { h.tgt.set_ana_state("127.0.0.1", 4420, 1, target::ana_state::change); }), ec::invalid);
    EXPECT_EQ(h.tgt.current_config().listeners[0].ana,
              (std::map<uint32_t, target::ana_state>{{1, target::ana_state::inaccessible}}));
    target::listener_config in_change;
    in_change.address = "127.0.0.1";
    in_change.port = 4422;
    in_change.ana[3] = target::ana_state::change;
    EXPECT_EQ(code([&] { h.tgt.add_listener(in_change); }), ec::invalid);
    EXPECT_EQ(h.tgt.current_config().listeners.size(), 2u);
    h.tgt.set_ana_state("127.0.0.1", 4420, 1, target::ana_state::optimized);
    // The states are the listener's configuration (persisted with it).
    h.tgt.set_ana_state("127.0.0.1", 4421, 2, target::ana_state::non_optimized);
    auto cfg = h.tgt.current_config();
    ASSERT_EQ(cfg.listeners.size(), 2u);
    EXPECT_TRUE(cfg.listeners[0].ana.empty());
    EXPECT_EQ(cfg.listeners[1].ana, (std::map<uint32_t, target::ana_state>{{2, target::ana_state::non_optimized}}));
    EXPECT_EQ(cfg.subsystems[0].namespaces[1].ana_group, 2u);
}

// A gateway group (mgmt/gateway_group) runs every group's state: set by hand is refused, its own
// setter reaches every listener (change included, with the AEN), a listener added later starts
// in the managed state, and nothing of it is written into the listeners' configuration.
TEST(ana, groups_run_by_a_gateway_group_refuse_manual_states_and_follow_the_gateway) {
    harness h(two_listeners());
    path p1(h, 4421);
    ASSERT_EQ(p1.set_aen(nvme::aen::cfg_ana), 0);
    std::vector<uint32_t> all;
    for (uint32_t g = 1; g <= target::max_ana_groups; ++g) all.push_back(g);
    EXPECT_TRUE(h.tgt.managed_ana().manager.empty());  // no gateway group: nothing to show
    h.tgt.set_ana_manager(all, "gateway gw-a of group g");
    try {
        h.tgt.set_ana_state("127.0.0.1", 4420, 1, target::ana_state::inaccessible);
        ADD_FAILURE() << "a managed group's state was set by hand";
    } catch (const target::change_error& e) {
        EXPECT_EQ(e.code, target::change_errc::conflict);
        EXPECT_NE(std::string(e.what()).find("gateway gw-a of group g"), std::string::npos) << e.what();
    }
    auto aer = p1.admin.make(nvme::admin_opc::async_event);
    p1.admin.send_capsule(aer, {}, true, 0);
    h.tgt.set_managed_ana_state(1, target::ana_state::change);
    auto ka = p1.admin.make(nvme::admin_opc::keep_alive);
    p1.admin.send_capsule(ka, {}, true, 0);
    auto ev = p1.admin.wait(aer.cid);
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->cqe.dw0, nvme::aen::ana_changed);
    ASSERT_TRUE(p1.admin.wait(ka.cid));
    auto l = parse(p1.ana_log(4096).data);
    ASSERT_FALSE(l.groups.empty());
    EXPECT_EQ(l.groups[0].group, 1u);
    EXPECT_EQ(l.groups[0].state, 0x0F);  // change
    EXPECT_EQ(p1.read(1), nvme::sc::ana_transition);
    h.tgt.set_managed_ana_state(1, target::ana_state::inaccessible);
    EXPECT_EQ(p1.read(1), nvme::sc::ana_inaccessible);
    EXPECT_EQ(h.tgt.managed_ana_state(1), target::ana_state::inaccessible);
    // A listener added now starts as the others are.
    target::listener_config late;
    late.address = "127.0.0.1";
    late.port = 4422;
    h.tgt.add_listener(late);
    path p2(h, 4422);
    EXPECT_EQ(p2.read(1), nvme::sc::ana_inaccessible);
    h.tgt.set_managed_ana_state(1, target::ana_state::optimized);
    EXPECT_EQ(p2.read(1), 0);
    EXPECT_EQ(p1.read(1), 0);
    // Runtime only: a restart starts managed groups inaccessible until the gateway holds locks.
    for (const auto& lc : h.tgt.current_config().listeners) EXPECT_TRUE(lc.ana.empty());
    // What the REST API shows instead: the live state of each group a namespace uses.
    h.tgt.set_managed_ana_state(2, target::ana_state::inaccessible);
    const auto view = h.tgt.managed_ana();
    EXPECT_EQ(view.manager, "gateway gw-a of group g");
    using states = std::map<uint32_t, target::ana_state>;
    EXPECT_EQ(view.groups, (states{{1, target::ana_state::optimized}, {2, target::ana_state::inaccessible}}));
}

// Gateways of one group give out disjoint CNTLIDs (Linux refuses a second path with a CNTLID
// it has seen in the subsystem).
TEST(ana, cntlid_range_bounds_the_controller_ids) {
    harness h(two_listeners());
    h.tgt.set_cntlid_range(1001, 1002);
    path a(h, 4420), b(h, 4421);
    EXPECT_EQ(a.cntlid, 1001);
    EXPECT_EQ(b.cntlid, 1002);
    // Both in use: the next Connect gets no controller.
    host_conn c(h);
    c.icreq();
    EXPECT_NE(c.connect(open_nqn, host_a, 0, 0xFFFF, 31, 5000).status, 0);
    EXPECT_THROW(h.tgt.set_cntlid_range(5, 4), target::change_error);
    EXPECT_THROW(h.tgt.set_cntlid_range(0, 4), target::change_error);
}
