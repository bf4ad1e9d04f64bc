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
    // A read the queue must not answer: it closes the connection instead.
    void expect_read_closes_the_queue_unanswered() {
        const auto c = io.rw(nvme::io_opc::read, 1, 0, 1);
        io.send_capsule(c, {}, false, 4096);
        EXPECT_FALSE(io.wait(c.cid)) << "answered";
        EXPECT_TRUE(io.target_closed());
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

// PRINFO on a namespace without protection information is ignored (NVM Command Set; nvmet,
// SPDK and QEMU do so), whatever its bits: PRACT and every PRCHK bit.
TEST_F(io_queue_fixture, protection_information_field_is_ignored_without_pi) {
    auto d = pattern(4096, 9);
    for (uint32_t prinfo : {0x1u, 0x8u, 0xFu}) {
        auto w = io.rw(nvme::io_opc::write, 1, 40, 1);
        w.cdw12 |= prinfo << 26;
        EXPECT_EQ(io.cmd(w, d, 0, true).status, 0) << prinfo;
        auto r = io.rw(nvme::io_opc::read, 1, 40, 1);
        r.cdw12 |= prinfo << 26;
        auto got = io.cmd(r, {}, 4096);
        EXPECT_EQ(got.status, 0) << prinfo;
        EXPECT_EQ(got.data, d) << prinfo;
    }
}

TEST_F(io_queue_fixture, eight_mib_transfers_and_512_byte_blocks) {
    auto big = pattern(8u << 20, 2);
    EXPECT_EQ(write(1, 1000, big, 4096, false).status, 0);
    EXPECT_EQ(read(1, 1000, 2048).data, big);
    auto small = pattern(512 * 3, 3);
    EXPECT_EQ(write(3, 5, small, 512).status, 0);
    EXPECT_EQ(read(3, 5, 3, 512).data, small);
    // Beyond MDTS.
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 0, 2049), {}, 2049 * 4096).status, nvme::sc::invalid_field | dnr);
    // The command is judged before its data (nvmet): an unknown namespace or opcode says so,
    // not Invalid Field for the length or the data direction (bidirectional 0x83, none 0x00).
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::read, 99, 0, 2049), {}, 2049 * 4096).status,
              nvme::sc::invalid_namespace | dnr);
    EXPECT_EQ(io.cmd(io.rw(0x83, 1, 0, 1), {}, 4096).status, nvme::sc::invalid_opcode | dnr);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::flush, 1, 0, 1), {}, 4096).status, nvme::sc::sgl_invalid_data_length | dnr);
    EXPECT_EQ(io.cmd(io.rw(0x84, 1, 0, 1), {}, 4096).status, nvme::sc::invalid_opcode | dnr);  // no data direction
}

// An 8 MiB C2HData is one transmit ring entry for its 1,024 chunks: the ring stays at the size
// configure_queue gave it (4 entries per request) with several 8 MiB reads queued behind a full
// socket, with and without digests.
TEST(io_transmit_ring, eight_mib_reads_at_depth_keep_the_ring_at_its_bound) {
    harness h;
    auto big = pattern(8u << 20, 7);
    for (bool digests : {false, true}) {
        association a(h, 5000, 127, digests, digests);
        const size_t bound = transport::connection::tx_ring_entries(128 + 1);
        EXPECT_LE(a.io.conn->tx_ring_capacity(), bound);
        ASSERT_EQ(a.io.cmd(a.io.rw(nvme::io_opc::write, 1, 0, 2048), big, 0, false).status, 0);
        std::vector<nvme::sqe> reads;
        for (int i = 0; i < 6; ++i) {
            reads.push_back(a.io.rw(nvme::io_opc::read, 1, 0, 2048));
            a.io.send_capsule(reads.back(), {}, false, 8u << 20);
        }
        for (const auto& c : reads) {
            auto r = a.io.wait(c.cid);
            ASSERT_TRUE(r);
            EXPECT_EQ(r->status, 0);
            EXPECT_TRUE(r->data == big) << "digests " << digests;
        }
        EXPECT_LE(a.io.conn->tx_ring_capacity(), bound) << "digests " << digests;
    }
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

TEST_F(io_queue_fixture, fused_io_commands_are_refused) {
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

// Clearing CC.EN resets the controller: its I/O queues are deleted. One that gets a command
// before its timer tick closes at once, unanswered (as on a dead controller, below); CSTS.RDY
// reads 0 once no I/O queue is left, closed and released by its reactor (its commands done).
TEST_F(io_queue_fixture, io_after_disable_closes_the_queue_and_ready_clears_after_it) {
    ASSERT_EQ(read(1, 0, 1).status, 0);
    const uint32_t cc = (6u << 16) | (4u << 20);
    ASSERT_EQ(admin.property_set(nvme::reg::cc, cc).status, 0);
    EXPECT_EQ(admin.property_get(nvme::reg::csts).cqe.dw0 & nvme::csts::rdy, nvme::csts::rdy);  // not yet
    expect_read_closes_the_queue_unanswered();
    EXPECT_FALSE(io.last_term);
    EXPECT_EQ(admin.property_get(nvme::reg::csts).cqe.dw0 & nvme::csts::rdy, nvme::csts::rdy);  // not released
    ASSERT_TRUE(io.conn->reapable());
    io.conn.reset();  // what the reactor does with a reapable connection
    EXPECT_EQ(admin.property_get(nvme::reg::csts).cqe.dw0 & nvme::csts::rdy, 0u);
}

// Disabled and enabled again before the I/O queue's timer tick: the queue was deleted by the
// reset all the same, and serves nothing more.
TEST_F(io_queue_fixture, a_queue_deleted_by_a_reset_stays_deleted_after_a_quick_re_enable) {
    ASSERT_EQ(read(1, 0, 1).status, 0);
    const uint32_t cc = (6u << 16) | (4u << 20);
    ASSERT_EQ(admin.property_set(nvme::reg::cc, cc).status, 0);
    ASSERT_EQ(admin.property_set(nvme::reg::cc, cc | nvme::cc::en).status, 0);
    expect_read_closes_the_queue_unanswered();
}

// The moment between a reset clearing `ready` and counting itself (begin_reset), as another
// reactor may see it: the queue closes unanswered too, never answers with DNR (which would make
// Linux fail the I/O to the application).
TEST_F(io_queue_fixture, a_controller_not_ready_before_the_reset_is_counted_closes_the_queue) {
    ASSERT_EQ(read(1, 0, 1).status, 0);
    admin.queue().ctrl()->ready.store(false);
    expect_read_closes_the_queue_unanswered();
}

TEST_F(io_queue_fixture, io_on_a_dead_controller_closes_the_queue_unanswered) {
    ASSERT_EQ(read(1, 0, 1).status, 0);
    // Keep-alive timeout: the admin queue's reactor tears the controller down...
    admin.conn->on_timer(env::now_ns() + 10'000'000'000ull);
    ASSERT_TRUE(admin.conn->closing());
    ASSERT_TRUE(admin.queue().ctrl()->dead.load());
    // ...a command reaching the I/O queue (another reactor) before its timer tick closes it at
    // once, unanswered: an error with DNR would make Linux fail the I/O to the application,
    // where a lost connection makes it retry the command on its next association.
    const auto c = io.rw(nvme::io_opc::read, 1, 0, 1);
    io.send_capsule(c, {}, false, 4096);
    EXPECT_FALSE(io.wait(c.cid)) << "answered";
    EXPECT_FALSE(io.last_term);
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

// A null namespace's reads are zeroes however they are sent, although its store never fills
// the read buffers: the pool chunks they get last held a RAM namespace's data (a small pool,
// so the same chunks come back), which must not reach the host.
TEST(null_namespace, reads_are_zeroes_whatever_the_buffers_held) {
    auto cfg = test_config();
    cfg.subsystems[0].namespaces.push_back(
        {2, target::backend_kind::null, 64u << 20, 4096, std::nullopt, std::nullopt, std::nullopt, {}, {}, 0, {}});
    harness h(cfg, 12u << 20);
    const auto data = pattern(8u << 20, 9);
    for (bool digests : {false, true}) {
        association a(h, 5000, 127, digests, digests);
        for (uint32_t nlb : {1u, 2u, 32u, 2048u}) {
            const std::vector<uint8_t> part(data.begin(), data.begin() + nlb * 4096);
            ASSERT_EQ(a.io.cmd(a.io.rw(nvme::io_opc::write, 1, 0, nlb), part, 0, false).status, 0);
            ASSERT_EQ(a.io.cmd(a.io.rw(nvme::io_opc::read, 1, 0, nlb), {}, nlb * 4096).data, part);
            auto r = a.io.cmd(a.io.rw(nvme::io_opc::read, 2, 7, nlb), {}, nlb * 4096);
            EXPECT_EQ(r.status, 0);
            ASSERT_EQ(r.data.size(), nlb * 4096u) << nlb << " blocks, digests " << digests;
            EXPECT_TRUE(std::all_of(r.data.begin(), r.data.end(), [](uint8_t x) { return x == 0; }))
                << nlb << " blocks, digests " << digests;
        }
    }
}

// A null namespace's read needs no buffers: the target says so when the transport asks
// (check()) and the transport takes no pool chunks for it. With a pool whose unreserved
// chunks cannot back an 8 MiB transfer, the RAM namespace's 8 MiB read is refused (Internal
// Error) while the null namespace's is served, zeroes, with and without digests.
TEST(null_namespace, reads_take_no_pool_chunks) {
    auto cfg = test_config();
    cfg.subsystems[0].namespaces.push_back(
        {2, target::backend_kind::null, 64u << 20, 4096, std::nullopt, std::nullopt, std::nullopt, {}, {}, 0, {}});
    harness h(cfg, 1100 * 8192, /*connection_chunks=*/1024);  // 938 chunks unreserved: < 1024
    const uint32_t nlb = 2048;                                // 8 MiB
    for (bool digests : {false, true}) {
        association a(h, 5000, 127, digests, digests);
        EXPECT_EQ(a.io.cmd(a.io.rw(nvme::io_opc::read, 1, 0, nlb), {}, nlb * 4096).status, nvme::sc::internal_error);
        for (uint32_t n : {nlb, 3u}) {  // 3 blocks: more than a chunk, the size check() is asked for
            auto r = a.io.cmd(a.io.rw(nvme::io_opc::read, 2, 11, n), {}, n * 4096);
            EXPECT_EQ(r.status, 0) << n << " blocks, digests " << digests;
            ASSERT_EQ(r.data.size(), n * 4096u);
            EXPECT_TRUE(std::all_of(r.data.begin(), r.data.end(), [](uint8_t x) { return x == 0; }));
        }
    }
}

namespace {
// Around a RAM store with a transfer limit (an SSD's MDTS): records what the target submits
// and fails the `fail_at`-th command (1-based; 0 = none) with `fail_status`.
struct piece_log {
    std::vector<uint32_t> bytes;  // per command the store received
    std::vector<uint64_t> slba;
    std::vector<bool> fua;
    unsigned fail_at = 0;
    uint16_t fail_status = nvme::sc::unrecovered_read_error;
};
struct recording_queue final : nvme::block_queue {
    std::unique_ptr<nvme::block_queue> inner;
    piece_log& log;
    recording_queue(std::unique_ptr<nvme::block_queue> q, piece_log& l) : inner(std::move(q)), log(l) {}
    void submit(const nvme::sqe& cmd, std::span<const iovec> data, nvme::io_completion& done) override {
        uint32_t n = 0;
        for (const iovec& v : data) n += static_cast<uint32_t>(v.iov_len);
        log.bytes.push_back(n);
        log.slba.push_back(nvme::io_slba(cmd));
        log.fua.push_back(cmd.cdw12 & (1u << 30));
        if (log.bytes.size() == log.fail_at) return done.complete(log.fail_status);
        inner->submit(cmd, data, done);
    }
};
struct recording_store final : nvme::block_store {
    std::unique_ptr<nvme::block_store> inner;
    piece_log& log;
    recording_store(std::unique_ptr<nvme::block_store> s, piece_log& l) : inner(std::move(s)), log(l) {}
    uint64_t block_count() const override { return inner->block_count(); }
    uint32_t block_size() const override { return inner->block_size(); }
    uint32_t max_transfer_bytes() const override { return limit ? limit : inner->max_transfer_bytes(); }
    bool reads_zeroes() const override { return inner->reads_zeroes(); }
    std::string describe() const override { return "recording " + inner->describe(); }
    uint32_t limit = 0;  // a transfer limit of its own (0: the inner store's)
    std::unique_ptr<nvme::block_queue> create_queue(unsigned depth, const env::dma_pool* buffers,
                                                    nvme::queue_group* group) override {
        return std::make_unique<recording_queue>(inner->create_queue(depth, buffers, group), log);
    }
};

// NSID 1 (16 MiB, 4 KiB blocks) on a RAM store that takes at most `limit` bytes per command,
// set before the I/O queue connects (its binding reads the limit).
struct split_fixture : ::testing::Test {
    harness h;
    piece_log log;
    std::unique_ptr<association> a;
    void serve(uint32_t limit) {
        auto& n = const_cast<target::ns&>(*h.tgt.find_subsystem(open_nqn)->find_ns(1));
        n.store = std::make_unique<recording_store>(nvme::make_ram_store((16u << 20) / 4096, 4096, limit), log);
        a = std::make_unique<association>(h);
    }
    host_conn& io() { return a->io; }
    response write(uint64_t slba, const std::vector<uint8_t>& d, bool fua = false) {
        auto c = io().rw(nvme::io_opc::write, 1, slba, static_cast<uint32_t>(d.size() / 4096));
        if (fua) c.cdw12 |= 1u << 30;
        return io().cmd(c, d, 0, false);
    }
    response read(uint64_t slba, uint32_t nlb) {
        return io().cmd(io().rw(nvme::io_opc::read, 1, slba, nlb), {}, nlb * 4096);
    }
    // Reads [slba, slba + bytes) in commands the store takes whole (no split involved).
    std::vector<uint8_t> read_unsplit(uint64_t slba, size_t bytes, uint32_t limit) {
        std::vector<uint8_t> out;
        for (size_t at = 0; at < bytes; at += limit) {
            const uint32_t n = static_cast<uint32_t>(std::min<size_t>(limit, bytes - at));
            auto r = read(slba + at / 4096, n / 4096);
            EXPECT_EQ(r.status, 0);
            out.insert(out.end(), r.data.begin(), r.data.end());
        }
        return out;
    }
};
}  // namespace

TEST_F(split_fixture, eight_mib_and_odd_sizes_reach_a_128k_store_in_pieces) {
    const uint32_t limit = 128u << 10;
    serve(limit);
    for (const size_t size : {size_t(8u << 20), size_t((1u << 20) + 4096), size_t(limit + 4096), size_t(12288)}) {
        SCOPED_TRACE(size);
        auto d = pattern(size, static_cast<uint32_t>(size));
        log.bytes.clear();
        log.slba.clear();
        ASSERT_EQ(write(7, d).status, 0);
        // Pieces of at most the limit, in order, covering the command exactly.
        uint64_t covered = 0;
        for (size_t i = 0; i < log.bytes.size(); ++i) {
            EXPECT_LE(log.bytes[i], limit);
            EXPECT_EQ(log.slba[i], 7 + covered / 4096);
            covered += log.bytes[i];
        }
        EXPECT_EQ(covered, size);
        EXPECT_EQ(log.bytes.size(), (size + limit - 1) / limit);
        // On the medium where it belongs (read back in commands the store takes whole)...
        EXPECT_EQ(read_unsplit(7, size, limit), d);
        // ...and read back in one command, split the same way.
        log.bytes.clear();
        auto r = read(7, static_cast<uint32_t>(size / 4096));
        ASSERT_EQ(r.status, 0);
        EXPECT_EQ(r.data, d);
        for (uint32_t b : log.bytes) EXPECT_LE(b, limit);
        EXPECT_EQ(log.bytes.size(), (size + limit - 1) / limit);
    }
}

// A store that reads zeroes and has a transfer limit: an 8 MiB read, which gets no buffers,
// still reaches it in pieces of at most the limit (with no data), in order, and the host gets
// zeroes.
TEST(null_namespace, a_limited_store_gets_a_read_without_buffers_in_pieces) {
    harness h(test_config(), 1100 * 8192, /*connection_chunks=*/1024);  // cannot back 8 MiB
    piece_log log;
    auto& n = const_cast<target::ns&>(*h.tgt.find_subsystem(open_nqn)->find_ns(1));
    auto store = std::make_unique<recording_store>(nvme::make_null_store((16u << 20) / 4096, 4096), log);
    store->limit = 128u << 10;
    n.store = std::move(store);
    association a(h);
    auto r = a.io.cmd(a.io.rw(nvme::io_opc::read, 1, 5, 2048), {}, 8u << 20);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.data.size(), 8u << 20);
    EXPECT_TRUE(std::all_of(r.data.begin(), r.data.end(), [](uint8_t x) { return x == 0; }));
    ASSERT_EQ(log.slba.size(), 64u);
    for (size_t i = 0; i < log.slba.size(); ++i) {
        EXPECT_EQ(log.slba[i], 5 + i * 32);
        EXPECT_EQ(log.bytes[i], 0u);  // no buffers given
    }
}

TEST_F(split_fixture, a_limit_below_a_pool_chunk_cuts_inside_chunks) {
    serve(4096);  // pool chunks are 8 KiB: each is sent in two pieces
    auto d = pattern(64 << 10, 5);
    ASSERT_EQ(write(100, d).status, 0);
    EXPECT_EQ(log.bytes, std::vector<uint32_t>(16, 4096));
    EXPECT_EQ(read_unsplit(100, d.size(), 4096), d);
    EXPECT_EQ(read(100, 16).data, d);
}

TEST_F(split_fixture, fua_applies_to_every_piece) {
    serve(128u << 10);
    ASSERT_EQ(write(0, pattern(1u << 20, 6), true).status, 0);
    ASSERT_EQ(log.fua.size(), 8u);
    for (bool f : log.fua) EXPECT_TRUE(f);
}

TEST_F(split_fixture, an_error_in_a_middle_piece_is_the_commands_status_and_stops_it) {
    serve(128u << 10);
    log.fail_at = 3;  // of 8
    EXPECT_EQ(read(0, 256).status, nvme::sc::unrecovered_read_error);
    EXPECT_EQ(log.bytes.size(), 3u);  // nothing submitted after the failed piece
    log.bytes.clear();
    log.fail_at = 4;
    log.fail_status = nvme::sc::write_fault;
    EXPECT_EQ(write(0, pattern(1u << 20, 7)).status, nvme::sc::write_fault);
    EXPECT_EQ(log.bytes.size(), 4u);
}

TEST_F(split_fixture, compare_is_split_too) {
    serve(128u << 10);
    auto d = pattern((1u << 20) + 4096, 8);
    ASSERT_EQ(write(10, d).status, 0);
    auto cmp = io().rw(nvme::io_opc::compare, 1, 10, 257);
    EXPECT_EQ(io().cmd(cmp, d, 0, false).status, 0);
    d[5 * (128u << 10) + 17] ^= 1;  // in the sixth piece
    log.bytes.clear();
    auto cmp2 = io().rw(nvme::io_opc::compare, 1, 10, 257);
    EXPECT_EQ(io().cmd(cmp2, d, 0, false).status, nvme::sc::compare_failure | dnr);
    EXPECT_EQ(log.bytes.size(), 6u);
}
