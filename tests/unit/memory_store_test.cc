#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "env/dma_pool.hh"
#include "env/thread.hh"
#include "nvme/block_queue.hh"
#include "test_host.hh"

using namespace ferry;

namespace {
nvme::sqe io(uint8_t opc, uint64_t slba, uint32_t nlb) { return test::io_command(opc, 1, slba, nlb); }
using test::completion_recorder;
}  // namespace

TEST(ram_store, write_read_compare_zero_deallocate) {
    auto store = nvme::make_ram_store(1024, 4096);
    auto q = store->create_queue(8, nullptr, nullptr);
    std::vector<uint8_t> a(8192), b(8192);
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 7);
    // Scattered over two iovecs of different sizes.
    iovec wv[2] = {{a.data(), 3000}, {a.data() + 3000, 5192}};
    completion_recorder r;
    q->submit(io(nvme::io_opc::write, 10, 2), wv, r);
    EXPECT_EQ(r.status, nvme::sc::success);
    iovec rv[1] = {{b.data(), b.size()}};
    q->submit(io(nvme::io_opc::read, 10, 2), rv, r);
    EXPECT_EQ(a, b);
    q->submit(io(nvme::io_opc::compare, 10, 2), wv, r);
    EXPECT_EQ(r.status, nvme::sc::success);
    a[5000] ^= 1;
    q->submit(io(nvme::io_opc::compare, 10, 2), wv, r);
    EXPECT_EQ(r.status, nvme::sc::compare_failure | nvme::status_dnr);

    q->submit(io(nvme::io_opc::write_zeroes, 11, 1), {}, r);
    q->submit(io(nvme::io_opc::read, 10, 2), rv, r);
    EXPECT_TRUE(std::equal(b.begin(), b.begin() + 4096, a.begin()));  // block 10 untouched
    EXPECT_TRUE(std::all_of(b.begin() + 4096, b.end(), [](uint8_t x) { return x == 0; }));

    // Deallocate block 10 through a DSM range.
    q->submit(io(nvme::io_opc::write, 10, 2), wv, r);
    struct { uint32_t attr, len; uint64_t slba; } __attribute__((packed)) range{0, 1, 10};
    iovec dv[1] = {{&range, sizeof(range)}};
    nvme::sqe dsm{};
    dsm.opcode = nvme::io_opc::dataset_mgmt;
    dsm.cdw10 = 0;  // one range
    dsm.cdw11 = 4;  // AD
    q->submit(dsm, dv, r);
    q->submit(io(nvme::io_opc::read, 10, 2), rv, r);
    EXPECT_TRUE(std::all_of(b.begin(), b.begin() + 4096, [](uint8_t x) { return x == 0; }));
    EXPECT_EQ(b[4096 + 1], a[4096 + 1]);
    EXPECT_EQ(r.calls, 9);
}

// The null store says its reads are zeroes and leaves read buffers alone (the transport sends
// zeroes of its own: io_test's null_namespace_reads_are_zeroes_whatever_the_buffers_held).
TEST(null_store, reads_zeroes_without_touching_the_buffer) {
    auto store = nvme::make_null_store(100, 512);
    EXPECT_TRUE(store->reads_zeroes());
    EXPECT_FALSE(nvme::make_ram_store(100, 512)->reads_zeroes());
    auto q = store->create_queue(1, nullptr, nullptr);
    std::vector<uint8_t> b(512, 0xAA);
    iovec v{b.data(), b.size()};
    completion_recorder r;
    q->submit(io(nvme::io_opc::read, 0, 1), {&v, 1}, r);
    EXPECT_EQ(r.status, 0);
    EXPECT_TRUE(std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0xAA; }));
}

// Its reads are zeroes, so a Compare matches zeroes only (it answered success for any data).
TEST(null_store, compare_matches_only_zeroes) {
    auto q = nvme::make_null_store(100, 512)->create_queue(1, nullptr, nullptr);
    std::vector<uint8_t> b(1024, 0);
    iovec v[2] = {{b.data(), 512}, {b.data() + 512, 512}};
    completion_recorder r;
    q->submit(io(nvme::io_opc::compare, 0, 2), v, r);
    EXPECT_EQ(r.status, nvme::sc::success);
    b[700] = 1;
    q->submit(io(nvme::io_opc::compare, 0, 2), v, r);
    EXPECT_EQ(r.status, nvme::sc::compare_failure | nvme::status_dnr);
}

TEST(dma_pool, all_or_nothing_and_accounting) {
    env::dma_pool pool(10 * env::dma_pool::chunk_size);
    EXPECT_EQ(pool.total_chunks(), 10u);
    iovec v[16];
    EXPECT_FALSE(pool.get(11, v));
    EXPECT_EQ(pool.free_chunks(), 10u);
    ASSERT_TRUE(pool.get(7, v));
    EXPECT_EQ(pool.free_chunks(), 3u);
    for (int i = 0; i < 7; ++i) {
        EXPECT_TRUE(pool.owns(v[i].iov_base));
        EXPECT_EQ(v[i].iov_len, env::dma_pool::chunk_size);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(v[i].iov_base) % env::dma_pool::chunk_size, 0u);
        std::memset(v[i].iov_base, i, env::dma_pool::chunk_size);  // memory is really there
    }
    pool.put(v, 7);
    EXPECT_EQ(pool.free_chunks(), 10u);
}

TEST(cpu_list, parses_and_rejects) {
    EXPECT_EQ(env::parse_cpu_list("0"), std::vector<int>{0});
    EXPECT_EQ(env::parse_cpu_list("0-2,5"), (std::vector<int>{0, 1, 2, 5}));
    EXPECT_THROW(env::parse_cpu_list("1,1"), std::invalid_argument);
    EXPECT_THROW(env::parse_cpu_list("3-1"), std::invalid_argument);
    EXPECT_THROW(env::parse_cpu_list("a"), std::invalid_argument);
    EXPECT_THROW(env::parse_cpu_list(""), std::invalid_argument);
}
