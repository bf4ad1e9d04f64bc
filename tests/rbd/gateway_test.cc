// A gateway group of two ferryd processes (tests/integration/gateway.sh starts them): gateway A
// owns ANA group 1 (the image's namespace), gateway B (this test's path) reports it
// inaccessible. Through B: Identify and the ANA log, 302h on I/O; then this test kills A with
// SIGKILL and waits, with an AER outstanding on B, for the ANA change notice, after which B
// serves the namespace. Environment: GW_NQN, GW_PORT_B, GW_PID_A, GW_CNTLID_MIN_B/MAX_B.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "../unit/test_host.hh"

using namespace ferry;
using namespace ferry::test;

namespace {

std::string env_text(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) throw std::runtime_error(std::string("environment variable ") + name + " is not set");
    return v;
}
unsigned long env_number(const char* name) {
    return std::stoul(env_text(name));
}

template <typename T>
T as(const std::vector<uint8_t>& d, size_t off = 0) {
    T v{};
    std::memcpy(&v, d.data() + off, sizeof(T));
    return v;
}

// ANA group 1's state in an ANA log page, and whether NSID 1 is listed under it.
struct group1 {
    int state = -1;
    bool has_ns1 = false;
    uint64_t chgcnt = 0;
};
group1 find_group1(const std::vector<uint8_t>& p) {
    group1 out;
    out.chgcnt = as<uint64_t>(p, 0);
    const uint16_t n = as<uint16_t>(p, 8);
    size_t at = 16;
    for (uint16_t i = 0; i < n && at + 32 <= p.size(); ++i) {
        const uint32_t g = as<uint32_t>(p, at), count = as<uint32_t>(p, at + 4);
        if (g == 1) {
            out.state = p[at + 16];
            for (uint32_t k = 0; k < count; ++k) out.has_ns1 |= as<uint32_t>(p, at + 32 + 4 * k) == 1;
        }
        at += 32 + 4 * count;
    }
    return out;
}

constexpr uint8_t optimized = 1, inaccessible = 3, change = 0x0F;

}  // namespace

TEST(gateway, survivor_reports_inaccessible_then_takes_the_group_over_with_an_aen) {
    const std::string nqn = env_text("GW_NQN");
    const auto port = static_cast<uint16_t>(env_number("GW_PORT_B"));
    const auto pid_a = static_cast<pid_t>(env_number("GW_PID_A"));
    const auto lo = env_number("GW_CNTLID_MIN_B"), hi = env_number("GW_CNTLID_MAX_B");
    const std::string hostnqn = "nqn.2014-08.org.nvmexpress:uuid:6d1c0e5e-0b1a-4c2e-9a57-gateway00001";

    host_conn admin(dial(port), false, false);
    const uint16_t cntlid = admin.bring_up_admin(nqn, hostnqn, 30000);
    EXPECT_GE(cntlid, lo);
    EXPECT_LE(cntlid, hi);
    host_conn io(dial(port), false, false);
    io.icreq();
    ASSERT_EQ(io.connect(nqn, hostnqn, 1, cntlid, 31, 0).status, 0);

    auto id = as<nvme::identify_ctrl>(admin.identify(nvme::cns::ctrl).data);
    EXPECT_TRUE(id.cmic & 0x2) << "CMIC: more than one controller";
    EXPECT_TRUE(id.cmic & 0x8) << "CMIC: ANA reporting";
    EXPECT_GT(id.anatt, 0);
    auto ns = admin.identify(nvme::cns::ns, 1);
    ASSERT_EQ(ns.status, 0);
    EXPECT_EQ(as<uint32_t>(ns.data, 92), 1u) << "ANAGRPID of NSID 1";
    EXPECT_TRUE(ns.data[30] & 0x1) << "NMIC: shared";

    auto log = admin.get_log(nvme::lid::ana, 4096);
    ASSERT_EQ(log.status, 0);
    auto before = find_group1(log.data);
    EXPECT_EQ(before.state, inaccessible) << "gateway A owns group 1: inaccessible through B";
    EXPECT_TRUE(before.has_ns1);

    auto rd = io.cmd(io.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096);
    EXPECT_EQ(rd.status, nvme::sc::ana_inaccessible) << "read through the inaccessible path";

    auto s = admin.make(nvme::admin_opc::set_features);
    s.cdw10 = nvme::fid::async_event;
    s.cdw11 = nvme::aen::cfg_ana;
    ASSERT_EQ(admin.cmd(s).status, 0);
    auto aer = admin.make(nvme::admin_opc::async_event);
    admin.send_capsule(aer, {}, true, 0);

    ASSERT_EQ(::kill(pid_a, SIGKILL), 0) << "kill -9 of gateway A (pid " << pid_a << ")";
    const auto killed = std::chrono::steady_clock::now();
    // The notice must come by itself (no command of ours prompts it) once B holds the lock.
    for (int i = 0; i < 600 && !admin.readable(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(admin.readable()) << "no AEN within 30 s of the kill";
    auto ev = admin.wait(aer.cid);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->status, 0);
    EXPECT_EQ(ev->cqe.dw0, nvme::aen::ana_changed);
    std::printf("ANA change notice through gateway B %.1f s after gateway A was killed (ANATT %u s)\n", seconds,
                unsigned(id.anatt));

    // The host reads the log (RAE clear); the group may still be in change: read until it is not.
    group1 after;
    for (int i = 0; i < 100; ++i) {
        auto l = admin.get_log(nvme::lid::ana, 4096);
        ASSERT_EQ(l.status, 0);
        after = find_group1(l.data);
        if (after.state != change) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(after.state, optimized);
    EXPECT_GT(after.chgcnt, before.chgcnt);
    const double optimized_after = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
    std::printf("group 1 optimized through gateway B %.1f s after the kill\n", optimized_after);
    // Detection (dead_after_ms 4 s) plus the lock break: well inside what a Linux host waits.
    EXPECT_LT(optimized_after, 2.0 * id.anatt);

    auto rd2 = io.cmd(io.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096);
    EXPECT_EQ(rd2.status, 0) << "read through the survivor";
    // LBA 30000: beyond the regions the script verifies afterwards.
    auto wr = io.cmd(io.rw(nvme::io_opc::write, 1, 30000, 1), std::vector<uint8_t>(4096, 0x5A));
    EXPECT_EQ(wr.status, 0) << "write through the survivor";
}
