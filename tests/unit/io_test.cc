// NVM I/O commands end to end through the transport and the RAM store.
#include <gtest/gtest.h>

#include "test_host.hh"

using namespace ferry;
using namespace ferry::test;

namespace {
struct io_queue_fixture : ::testing::Test {
    harness h;
    association a{h};
    host_conn& admin = a.admin;
    host_conn& io = a.io;
    response write(uint32_t nsid, uint64_t slba, const std::vector<uint8_t>& d, uint32_t bs = 4096, bool inc = true) {
        return io.cmd(io.rw(nvme::io_opc::write, nsid, slba, static_cast<uint32_t>(d.size() / bs)), d, 0, inc);
    }
    response read(uint32_t nsid, uint64_t slba, uint32_t nlb, uint32_t bs = 4096) {
        return io.cmd(io.rw(nvme::io_opc::read, nsid, slba, nlb), {}, nlb * bs);
    }
};
constexpr uint16_t dnr = nvme::status_dnr;
}  // namespace

TEST_F(io_queue_fixture, in_capsule_write_and_read_back) {
    auto d = pattern(8192, 1);
    EXPECT_EQ(write(1, 7, d).status, 0);
    EXPECT_TRUE(io.r2ts.empty());
    auto r = read(1, 7, 2);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.data, d);
}

TEST_F(io_queue_fixture, one_mib_transfers_and_512_byte_blocks) {
    auto big = pattern(1u << 20, 2);
    EXPECT_EQ(write(1, 1000, big, 4096, false).status, 0);
    EXPECT_EQ(read(1, 1000, 256).data, big);
    auto small = pattern(512 * 3, 3);
    EXPECT_EQ(write(3, 5, small, 512).status, 0);
    EXPECT_EQ(read(3, 5, 3, 512).data, small);
    // Beyond MDTS.
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 0, 257), {}, 257 * 4096).status, nvme::sc::invalid_field | dnr);
}

TEST_F(io_queue_fixture, lba_range_checks) {
    const uint64_t blocks = (16u << 20) / 4096;
    EXPECT_EQ(read(1, blocks - 1, 1).status, 0);
    EXPECT_EQ(read(1, blocks - 1, 2).status, nvme::sc::lba_out_of_range | dnr);
    EXPECT_EQ(read(1, blocks, 1).status, nvme::sc::lba_out_of_range | dnr);
    EXPECT_EQ(read(1, ~0ull - 1, 4).status, nvme::sc::lba_out_of_range | dnr);  // overflow-safe
    auto wz = io.rw(nvme::io_opc::write_zeroes, 1, blocks - 2, 3);
    EXPECT_EQ(io.cmd(wz).status, nvme::sc::lba_out_of_range | dnr);
}

TEST_F(io_queue_fixture, namespace_and_opcode_errors) {
    EXPECT_EQ(read(2, 0, 1).status, nvme::sc::invalid_namespace | dnr);
    EXPECT_EQ(read(0, 0, 1).status, nvme::sc::invalid_namespace | dnr);
    EXPECT_EQ(read(0xFFFFFFFF, 0, 1).status, nvme::sc::invalid_namespace | dnr);
    EXPECT_EQ(io.cmd(io.make(0x7E, 1)).status, nvme::sc::invalid_opcode | dnr);
    EXPECT_EQ(io.cmd(io.make(nvme::io_opc::write + 0x10, 1)).status, nvme::sc::invalid_opcode | dnr);
}

TEST_F(io_queue_fixture, transfer_length_must_match_nlb) {
    auto c = io.rw(nvme::io_opc::read, 1, 0, 2);
    EXPECT_EQ(io.cmd(c, {}, 4096).status, nvme::sc::sgl_invalid_data_length | dnr);
    auto w = io.rw(nvme::io_opc::write, 1, 0, 1);
    EXPECT_EQ(io.cmd(w, pattern(8192, 1)).status, nvme::sc::sgl_invalid_data_length | dnr);
}

TEST_F(io_queue_fixture, protection_info_and_fused_are_refused) {
    auto c = io.rw(nvme::io_opc::read, 1, 0, 1);
    c.cdw12 |= 1u << 29;  // PRACT
    EXPECT_EQ(io.cmd(c, {}, 4096).status, nvme::sc::invalid_field | dnr);
    auto f = io.rw(nvme::io_opc::read, 1, 0, 1);
    f.flags = 1;  // first of a fused pair
    EXPECT_EQ(io.cmd(f, {}, 4096).status, nvme::sc::invalid_field | dnr);
}

TEST_F(io_queue_fixture, write_zeroes_dsm_compare_flush) {
    auto d = pattern(4 * 4096, 4);
    ASSERT_EQ(write(1, 20, d, 4096, false).status, 0);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::write_zeroes, 1, 21, 1)).status, 0);
    auto r = read(1, 20, 4).data;
    EXPECT_TRUE(std::equal(d.begin(), d.begin() + 4096, r.begin()));
    EXPECT_TRUE(std::all_of(r.begin() + 4096, r.begin() + 8192, [](uint8_t b) { return b == 0; }));
    EXPECT_TRUE(std::equal(d.begin() + 8192, d.end(), r.begin() + 8192));

    struct { uint32_t attr, len; uint64_t slba; } __attribute__((packed)) range{0, 1, 22};
    std::vector<uint8_t> rd(sizeof(range));
    std::memcpy(rd.data(), &range, sizeof(range));
    auto dsm = io.make(nvme::io_opc::dataset_mgmt, 1);
    dsm.cdw11 = 4;  // deallocate
    EXPECT_EQ(io.cmd(dsm, rd).status, 0);
    r = read(1, 22, 1).data;
    EXPECT_TRUE(std::all_of(r.begin(), r.end(), [](uint8_t b) { return b == 0; }));
    range.slba = (16u << 20) / 4096;  // out of range
    std::memcpy(rd.data(), &range, sizeof(range));
    auto dsm2 = io.make(nvme::io_opc::dataset_mgmt, 1);
    dsm2.cdw11 = 4;
    EXPECT_EQ(io.cmd(dsm2, rd).status, nvme::sc::lba_out_of_range | dnr);

    std::vector<uint8_t> last(d.end() - 4096, d.end());
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::compare, 1, 23, 1), last).status, 0);
    last[100] ^= 0x55;
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::compare, 1, 23, 1), last).status, nvme::sc::compare_failure | dnr);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::flush, 1, 0, 1)).status, 0);
}

TEST_F(io_queue_fixture, io_after_disable_is_refused) {
    ASSERT_EQ(read(1, 0, 1).status, 0);
    // After CC.EN is cleared, I/O is refused with a sequence error.
    admin.property_set(nvme::reg::cc, (6u << 16) | (4u << 20));
    EXPECT_EQ(read(1, 0, 1).status, nvme::sc::command_sequence_error | dnr);
}

TEST_F(io_queue_fixture, io_on_a_dead_controller_is_refused_then_the_queue_closes) {
    ASSERT_EQ(read(1, 0, 1).status, 0);
    // Keep-alive timeout: the admin queue's reactor tears the controller down...
    admin.conn->on_timer(env::now_ns() + 10'000'000'000ull);
    ASSERT_TRUE(admin.conn->closing());
    ASSERT_TRUE(admin.queue().ctrl()->dead.load());
    // ...a command reaching the I/O queue (another reactor) before it notices is refused...
    EXPECT_EQ(read(1, 0, 1).status, nvme::sc::command_sequence_error | dnr);
    EXPECT_FALSE(io.conn->closing());
    // ...and its next timer tick closes it.
    io.conn->on_timer(env::now_ns());
    EXPECT_TRUE(io.conn->closing());
    EXPECT_TRUE(io.target_closed());
}

TEST_F(io_queue_fixture, many_outstanding_commands_complete) {
    // 64 reads and writes in flight on one queue, answered in any order the target likes.
    std::vector<nvme::sqe> cmds;
    std::vector<std::vector<uint8_t>> data;
    for (int i = 0; i < 64; ++i) {
        data.push_back(pattern(4096, 100 + i));
        auto c = io.rw(nvme::io_opc::write, 1, 500 + i, 1);
        io.send_capsule(c, data.back(), true, 4096);
        cmds.push_back(c);
    }
    for (auto& c : cmds) EXPECT_EQ(io.wait(c.cid)->status, 0);
    for (int i = 0; i < 64; ++i) EXPECT_EQ(read(1, 500 + i, 1).data, data[i]);
}
