// The rbd store against a real Ceph cluster (tests/integration/rbd.sh starts one with
// ../shared/ceph/micro and runs this binary). CEPH_CONF, CEPH_POOL and CEPH_IMAGE name the
// image; without them every test fails: nothing here is skipped.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "../unit/test_host.hh"

using namespace ferry;
using namespace ferry::test;

namespace {
constexpr uint16_t dnr = nvme::status_dnr;

std::string need_env(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) throw std::runtime_error(std::string(name) + " is not set: run tests/integration/rbd.sh");
    return v;
}

target::namespace_config rbd_namespace(uint32_t block_size = 4096) {
    target::namespace_config n;
    n.nsid = 1;
    n.backend = target::backend_kind::rbd;
    n.block_size = block_size;
    n.rbd.pool = need_env("CEPH_POOL");
    n.rbd.image = need_env("CEPH_IMAGE");
    n.rbd.ceph_conf = need_env("CEPH_CONF");
    return n;
}

target::target_config rbd_config(uint32_t block_size = 4096) {
    auto cfg = test_config();
    cfg.subsystems[0].namespaces = {rbd_namespace(block_size)};  // alone: VWC is the subsystem's
    return cfg;
}

struct rbd_fixture : ::testing::Test {
    harness h{rbd_config()};
    association a{h};
    host_conn& admin = a.admin;
    host_conn& io = a.io;
    response write(uint64_t slba, const std::vector<uint8_t>& d, bool fua = false) {
        auto c = io.rw(nvme::io_opc::write, 1, slba, static_cast<uint32_t>(d.size() / 4096));
        if (fua) c.cdw12 |= 1u << 30;
        return io.cmd(c, d, 0, false);
    }
    response read(uint64_t slba, uint32_t nlb) {
        return io.cmd(io.rw(nvme::io_opc::read, 1, slba, nlb), {}, nlb * 4096);
    }
};
}  // namespace

TEST(rbd_store, a_subsystem_with_a_ram_namespace_too_reports_a_volatile_write_cache) {
    auto cfg = rbd_config();
    cfg.subsystems[0].namespaces.push_back(
        {3, target::backend_kind::ram, 1u << 20, 4096, std::nullopt, std::nullopt, std::nullopt, {}, {}, 0, {}});
    harness h(cfg);
    association a(h);
    auto ctrl = a.admin.identify(nvme::cns::ctrl);
    ASSERT_EQ(ctrl.status, 0);
    EXPECT_EQ(reinterpret_cast<const nvme::identify_ctrl*>(ctrl.data.data())->vwc & 1, 1);
}

TEST_F(rbd_fixture, geometry_from_the_image_and_no_volatile_write_cache) {
    auto ctrl = admin.identify(nvme::cns::ctrl);
    ASSERT_EQ(ctrl.status, 0);
    const auto* id = reinterpret_cast<const nvme::identify_ctrl*>(ctrl.data.data());
    EXPECT_EQ(id->vwc & 1, 0);  // rbd_cache=false: an acknowledged write is stored
    EXPECT_EQ(id->oncs & 0x0D, 0x0D);
    auto ns = admin.identify(nvme::cns::ns, 1);
    ASSERT_EQ(ns.status, 0);
    const auto* idns = reinterpret_cast<const nvme::identify_ns*>(ns.data.data());
    EXPECT_EQ(idns->nsze, (1ull << 30) / 4096);  // micro's image: 1 GiB
}

TEST_F(rbd_fixture, write_read_fua_and_large_transfers) {
    auto d = pattern(8192, 1);
    ASSERT_EQ(write(7, d).status, 0);
    EXPECT_EQ(read(7, 2).data, d);
    auto f = pattern(4096, 2);
    ASSERT_EQ(write(9, f, true).status, 0);
    EXPECT_EQ(read(9, 1).data, f);
    auto big = pattern(1u << 20, 3);
    ASSERT_EQ(write(1000, big).status, 0);
    EXPECT_EQ(read(1000, 256).data, big);
}

// The same sequence as io_test's write_zeroes_dsm_compare_flush on RAM, with the same outcomes.
TEST_F(rbd_fixture, write_zeroes_dsm_compare_flush_as_on_ram) {
    auto d = pattern(4 * 4096, 4);
    ASSERT_EQ(write(20, d).status, 0);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::write_zeroes, 1, 21, 1)).status, 0);
    auto r = read(20, 4).data;
    ASSERT_EQ(r.size(), d.size());
    EXPECT_TRUE(std::equal(d.begin(), d.begin() + 4096, r.begin()));
    EXPECT_TRUE(std::all_of(r.begin() + 4096, r.begin() + 8192, [](uint8_t b) { return b == 0; }));
    EXPECT_TRUE(std::equal(d.begin() + 8192, d.end(), r.begin() + 8192));

    // Deallocate two ranges in one command (one of them empty): the block reads as zeroes.
    struct {
        uint32_t attr, len;
        uint64_t slba;
    } __attribute__((packed)) ranges[3]{{0, 1, 22}, {0, 0, 0}, {0, 1, 500}};
    std::vector<uint8_t> rd(sizeof(ranges));
    std::memcpy(rd.data(), ranges, sizeof(ranges));
    ASSERT_EQ(write(500, pattern(4096, 5)).status, 0);
    auto dsm = io.make(nvme::io_opc::dataset_mgmt, 1);
    dsm.cdw10 = 2;  // three ranges
    dsm.cdw11 = 4;  // deallocate
    EXPECT_EQ(io.cmd(dsm, rd).status, 0);
    for (uint64_t lba : {22ull, 500ull}) {
        r = read(lba, 1).data;
        EXPECT_TRUE(std::all_of(r.begin(), r.end(), [](uint8_t b) { return b == 0; })) << lba;
    }
    r = read(23, 1).data;
    EXPECT_TRUE(std::equal(d.begin() + 12288, d.end(), r.begin()));  // its neighbour is kept

    std::vector<uint8_t> last(d.end() - 4096, d.end());
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::compare, 1, 23, 1), last).status, 0);
    last[100] ^= 0x55;
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::compare, 1, 23, 1), last).status, nvme::sc::compare_failure | dnr);
    auto two = pattern(8192, 6);
    ASSERT_EQ(write(30, two).status, 0);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::compare, 1, 30, 2), two).status, 0);
    two[8000] ^= 1;  // a mismatch in the second block only
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::compare, 1, 30, 2), two).status, nvme::sc::compare_failure | dnr);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::flush, 1, 0, 1)).status, 0);
}

// A Compare is read and compared in pieces of the queue's 128 KiB bounce buffer.
TEST_F(rbd_fixture, a_compare_larger_than_the_bounce_buffer_compares_every_piece) {
    auto d = pattern(1u << 20, 7);  // 8 pieces
    ASSERT_EQ(write(2000, d).status, 0);
    auto compare = [&](const std::vector<uint8_t>& host) {
        return io.cmd(io.rw(nvme::io_opc::compare, 1, 2000, 256), host, 0, false).status;
    };
    EXPECT_EQ(compare(d), 0);
    for (size_t at :
         {size_t(200) << 10, size_t(128) << 10, (size_t(1) << 20) - 1}) {  // 2nd piece, its first byte, the last
        auto other = d;
        other[at] ^= 0x10;
        EXPECT_EQ(compare(other), nvme::sc::compare_failure | dnr) << at;
    }
    EXPECT_EQ(compare(d), 0);  // the buffer was handed on after the failures
}

// Compares sent together (each of its own blocks) take the bounce buffer one after the
// other, in the order they came; none reads into the buffer while another uses it.
TEST_F(rbd_fixture, compares_sent_together_wait_for_the_buffer_in_order) {
    constexpr int n = 6;
    std::vector<std::vector<uint8_t>> stored, host;
    for (int i = 0; i < n; ++i) {
        stored.push_back(pattern(8192, 20 + i));  // in-capsule: at most one 8 KiB chunk
        ASSERT_EQ(write(3000 + 2 * i, stored.back()).status, 0);
        host.push_back(stored.back());
        if (i % 2) host.back()[5000 + i] ^= 1;  // every other one differs
    }
    for (int round = 0; round < 20; ++round) {
        std::vector<uint16_t> cids;
        for (int i = 0; i < n; ++i) {
            auto c = io.rw(nvme::io_opc::compare, 1, 3000 + 2 * i, 2);
            cids.push_back(c.cid);
            io.send_capsule(c, host[i], true, 8192);
        }
        for (int i = 0; i < n; ++i) {
            auto r = io.wait(cids[i]);  // throws on another cid: the answers come in order
            ASSERT_TRUE(r) << i;
            EXPECT_EQ(r->status, i % 2 ? (nvme::sc::compare_failure | dnr) : 0) << "round " << round << " " << i;
        }
    }
}

TEST(rbd_store, data_survives_a_new_target) {
    auto d = pattern(64 * 1024, 11);
    {
        harness h(rbd_config());
        association a(h, 5000, 31);
        ASSERT_EQ(a.io.cmd(a.io.rw(nvme::io_opc::write, 1, 4000, 16), d, 0, false).status, 0);
    }
    harness h(rbd_config());
    association a(h, 5000, 31);
    auto r = a.io.cmd(a.io.rw(nvme::io_opc::read, 1, 4000, 16), {}, 64 * 1024);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.data, d);
}

TEST(rbd_store, block_size_512) {
    harness h(rbd_config(512));
    association a(h, 5000, 31);
    auto d = pattern(3 * 512, 12);
    ASSERT_EQ(a.io.cmd(a.io.rw(nvme::io_opc::write, 1, 77, 3), d, 0, false).status, 0);
    EXPECT_EQ(a.io.cmd(a.io.rw(nvme::io_opc::read, 1, 77, 3), {}, 3 * 512).data, d);
    auto ns = a.admin.identify(nvme::cns::ns, 1);
    EXPECT_EQ(reinterpret_cast<const nvme::identify_ns*>(ns.data.data())->nsze, (1ull << 30) / 512);
}

TEST(rbd_store, a_missing_image_or_pool_is_named) {
    auto n = rbd_namespace();
    n.rbd.image = "no-such-image";
    try {
        target::make_namespace("nqn.x", n);
        FAIL() << "opened a missing image";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(n.rbd.pool + "/no-such-image: image does not exist"), std::string::npos)
            << e.what();
    }
    n = rbd_namespace();
    n.rbd.pool = "no-such-pool";
    try {
        target::make_namespace("nqn.x", n);
        FAIL() << "opened a missing pool";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("no-such-pool/" + n.rbd.image + ": pool does not exist"),
                  std::string::npos)
            << e.what();
    }
}

TEST(rbd_store, a_cluster_that_does_not_answer_is_an_error_not_a_hang) {
    // A configuration whose monitor address nothing listens on: rados_connect gives up after
    // client_mount_timeout instead of waiting forever.
    const std::string conf = ::testing::TempDir() + "/ferry-rbd-nowhere.conf";
    std::ofstream(conf) << "[global]\nmon_host = v2:127.0.0.1:1\nauth_client_required = none\n";
    auto n = rbd_namespace();
    n.rbd.ceph_conf = conf;
    try {
        target::make_namespace("nqn.x", n);
        FAIL() << "connected to nothing";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot connect to the cluster"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(n.rbd.pool + "/" + n.rbd.image), std::string::npos) << e.what();
    }
}

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    const char* level = std::getenv("FERRY_TEST_LOG");
    spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::off);
    return RUN_ALL_TESTS();
}
