// ferry-perf's workload generator, block verifier and histogram.
#include <gtest/gtest.h>

#include <set>

#include "tools/perf/workload.hh"

using namespace ferry::perf;

TEST(generator, sequential_walks_and_wraps) {
    generator g(rw_mode::write, 0, 100, 10, 4, 1);  // slots at 100, 104 (108 would overflow)
    EXPECT_EQ(g.next().slba, 100u);
    EXPECT_EQ(g.next().slba, 104u);
    auto r = g.next();
    EXPECT_EQ(r.slba, 100u);
    EXPECT_FALSE(r.is_read);
    EXPECT_EQ(r.nlb, 4u);
}

TEST(generator, random_stays_aligned_inside_the_range) {
    generator g(rw_mode::randread, 0, 1000, 4096, 8, 7);
    std::set<uint64_t> seen;
    for (int i = 0; i < 10000; ++i) {
        auto r = g.next();
        EXPECT_TRUE(r.is_read);
        EXPECT_GE(r.slba, 1000u);
        EXPECT_LE(r.slba + r.nlb, 1000u + 4096u);
        EXPECT_EQ((r.slba - 1000) % 8, 0u);
        seen.insert(r.slba);
    }
    EXPECT_GT(seen.size(), 400u);  // 512 slots: nearly all visited
}

TEST(generator, mix_respects_the_read_percentage) {
    generator g(rw_mode::rw, 70, 0, 1 << 20, 1, 3);
    int reads = 0;
    for (int i = 0; i < 20000; ++i) reads += g.next().is_read;
    EXPECT_NEAR(reads / 20000.0, 0.70, 0.02);
    generator w(rw_mode::rw, 0, 0, 1 << 20, 1, 3);
    for (int i = 0; i < 100; ++i) EXPECT_FALSE(w.next().is_read);
}

TEST(generator, range_smaller_than_an_io_is_refused) {
    EXPECT_THROW(generator(rw_mode::read, 0, 0, 3, 4, 1), std::invalid_argument);
}

TEST(verify, intact_block_passes) {
    for (uint32_t bs : {512u, 4096u}) {
        std::vector<uint8_t> b(bs);
        stamp_block(b.data(), bs, 42, 3);
        EXPECT_EQ(check_block(b.data(), bs, 42, 3), verify_result::ok);
        EXPECT_EQ(check_block(b.data(), bs, 42, 0), verify_result::ok);  // unknown expectation
    }
}

TEST(verify, corrupted_block_is_detected) {
    std::vector<uint8_t> b(4096);
    stamp_block(b.data(), 4096, 42, 3);
    for (size_t at : {size_t(0), size_t(9), size_t(17), size_t(100), size_t(4095)}) {
        auto c = b;
        c[at] ^= 0x01;
        EXPECT_EQ(check_block(c.data(), 4096, 42, 3), verify_result::corrupted) << "byte " << at;
    }
}

TEST(verify, misplaced_block_is_detected) {
    std::vector<uint8_t> b(4096);
    stamp_block(b.data(), 4096, 42, 3);
    EXPECT_EQ(check_block(b.data(), 4096, 43, 3), verify_result::misplaced);
    EXPECT_EQ(check_block(b.data(), 4096, 43, 0), verify_result::misplaced);
}

TEST(verify, stale_generation_is_detected) {
    std::vector<uint8_t> b(4096);
    stamp_block(b.data(), 4096, 42, 3);
    uint32_t found = 0;
    EXPECT_EQ(check_block(b.data(), 4096, 42, 4, &found), verify_result::stale);
    EXPECT_EQ(found, 3u);
}

TEST(verify, zeroes_pass_only_when_nothing_was_written) {
    std::vector<uint8_t> z(4096, 0);
    EXPECT_EQ(check_block(z.data(), 4096, 1, 0), verify_result::ok);
    EXPECT_EQ(check_block(z.data(), 4096, 1, 2), verify_result::unwritten);
    std::vector<uint8_t> junk(4096, 0xAB);
    EXPECT_EQ(check_block(junk.data(), 4096, 1, 0), verify_result::corrupted);
}

TEST(verify_map, claims_do_not_overlap_and_generations_advance) {
    verify_map m(100, 16);
    EXPECT_TRUE(m.try_claim(100, 4));
    EXPECT_FALSE(m.try_claim(102, 4));
    EXPECT_TRUE(m.try_claim(104, 4));
    m.release(100, 4);
    EXPECT_TRUE(m.try_claim(102, 2));
    EXPECT_EQ(m.expected(105), 0u);
    EXPECT_EQ(m.next_generation(105), 1u);
    m.written(105, 1);
    EXPECT_EQ(m.expected(105), 1u);
    EXPECT_EQ(m.next_generation(105), 2u);
}

TEST(histogram, percentiles_within_precision) {
    histogram h;
    for (uint64_t v = 1; v <= 100000; ++v) h.record(v * 100);  // 100 ns .. 10 ms uniform
    EXPECT_EQ(h.count(), 100000u);
    EXPECT_NEAR(h.mean(), 5000050.0, 1.0);
    EXPECT_NEAR(double(h.percentile(0.5)), 5'000'000.0, 5'000'000.0 * 0.04);
    EXPECT_NEAR(double(h.percentile(0.99)), 9'900'000.0, 9'900'000.0 * 0.04);
    EXPECT_EQ(h.max(), 10'000'000u);
    EXPECT_LE(h.percentile(1.0), h.max());
    histogram other;
    other.record(50'000'000);
    h.merge(other);
    EXPECT_EQ(h.max(), 50'000'000u);
    EXPECT_EQ(h.count(), 100001u);
}

TEST(parse_bytes, units) {
    EXPECT_EQ(parse_bytes("4k"), 4096u);
    EXPECT_EQ(parse_bytes("128K"), 131072u);
    EXPECT_EQ(parse_bytes("1m"), 1u << 20);
    EXPECT_EQ(parse_bytes("512"), 512u);
    EXPECT_THROW(parse_bytes("4q"), std::invalid_argument);
    EXPECT_THROW(parse_bytes("k"), std::invalid_argument);
}
