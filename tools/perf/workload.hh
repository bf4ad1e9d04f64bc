// ferry-perf's workload generator, block stamps for --verify, and latency histogram.
// Pure code without sockets, unit tested on its own.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace ferry::perf {

enum class rw_mode { read, write, randread, randwrite, rw };
// Parses read|write|randread|randwrite|rw; throws std::invalid_argument.
rw_mode parse_rw(const std::string& s);
const char* rw_name(rw_mode m);

struct io_request {
    bool is_read;
    uint64_t slba;  // in logical blocks
    uint32_t nlb;   // logical blocks
};

// Generates I/Os of `nlb` blocks inside [first, first + count) logical blocks.
class generator {
public:
    generator(rw_mode mode, unsigned read_pct, uint64_t first, uint64_t count, uint32_t nlb, uint64_t seed);
    io_request next();
    uint64_t first() const { return _first; }
    uint64_t count() const { return _count; }

private:
    rw_mode _mode;
    unsigned _read_pct;
    uint64_t _first, _count, _slots;
    uint32_t _nlb;
    uint64_t _cursor = 0;
    std::mt19937_64 _rng;
};

// Every written block carries a stamp: magic, its LBA, a generation and a CRC32C of the
// whole block (with the CRC field zero). A read checks that the block is the one asked for
// (not misplaced), not older than the last write we completed (not stale), and intact.
struct block_stamp {
    uint64_t magic;
    uint64_t lba;
    uint32_t generation;
    uint32_t crc;
};
inline constexpr uint64_t stamp_magic = 0x46455252595046ull;  // "FPYRREF" (ferry-perf)

void stamp_block(uint8_t* block, uint32_t block_size, uint64_t lba, uint32_t generation);

enum class verify_result { ok, corrupted, misplaced, stale, unwritten };
const char* verify_name(verify_result r);
// `expected` 0 means unknown (nothing written by this run): any intact block, or zeroes, passes.
verify_result check_block(const uint8_t* block, uint32_t block_size, uint64_t lba, uint32_t expected,
                          uint32_t* found_generation = nullptr);

// Expected generations of a run's blocks and the blocks with I/O in flight (a worker never
// issues two overlapping I/Os, so every read has one right answer).
class verify_map {
public:
    verify_map(uint64_t first, uint64_t count) : _first(first), _gen(count, 0), _busy(count, false) {}
    bool try_claim(uint64_t slba, uint32_t nlb);
    void release(uint64_t slba, uint32_t nlb);
    uint32_t expected(uint64_t lba) const { return _gen[lba - _first]; }
    uint32_t next_generation(uint64_t lba) const { return _gen[lba - _first] + 1; }
    void written(uint64_t lba, uint32_t generation) { _gen[lba - _first] = generation; }

private:
    uint64_t _first;
    std::vector<uint32_t> _gen;
    std::vector<bool> _busy;
};

// Log-linear latency histogram (HdrHistogram-style: 32 sub-buckets per power of two, about
// 3% precision) over nanoseconds.
class histogram {
public:
    histogram() : _buckets(64 * sub, 0) {}
    void record(uint64_t ns);
    void merge(const histogram& o);
    uint64_t count() const { return _count; }
    double mean() const { return _count ? double(_sum) / double(_count) : 0; }
    uint64_t max() const { return _max; }
    uint64_t min() const { return _count ? _min : 0; }
    // Value at or below which fraction q (0..1) of the samples lie (bucket upper edge).
    uint64_t percentile(double q) const;

private:
    static constexpr unsigned sub_bits = 5, sub = 1u << sub_bits;
    static unsigned index_of(uint64_t v);
    static uint64_t upper_of(unsigned idx);
    std::vector<uint64_t> _buckets;
    uint64_t _count = 0, _sum = 0, _max = 0, _min = ~0ull;
};

// "4096", "4k", "128K", "1m" -> bytes; throws std::invalid_argument.
uint64_t parse_bytes(const std::string& s);

}  // namespace ferry::perf
