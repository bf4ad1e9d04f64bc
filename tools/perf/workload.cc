#include "tools/perf/workload.hh"

#include <bit>
#include <cstring>
#include <stdexcept>

#include "transport/pdu.hh"

namespace ferry::perf {

rw_mode parse_rw(const std::string& s) {
    if (s == "read") return rw_mode::read;
    if (s == "write") return rw_mode::write;
    if (s == "randread") return rw_mode::randread;
    if (s == "randwrite") return rw_mode::randwrite;
    if (s == "rw") return rw_mode::rw;
    throw std::invalid_argument("'" + s + "' is not a workload (read, write, randread, randwrite, rw)");
}

const char* rw_name(rw_mode m) {
    switch (m) {
    case rw_mode::read: return "read";
    case rw_mode::write: return "write";
    case rw_mode::randread: return "randread";
    case rw_mode::randwrite: return "randwrite";
    case rw_mode::rw: return "rw";
    }
    return "?";
}

generator::generator(rw_mode mode, unsigned read_pct, uint64_t first, uint64_t count, uint32_t nlb, uint64_t seed)
    : _mode(mode), _read_pct(read_pct), _first(first), _count(count), _nlb(nlb), _rng(seed) {
    if (nlb == 0 || count < nlb) throw std::invalid_argument("the range is smaller than one I/O");
    _slots = count / nlb;
}

io_request generator::next() {
    io_request r{};
    r.nlb = _nlb;
    switch (_mode) {
    case rw_mode::read:
    case rw_mode::write:
        r.is_read = _mode == rw_mode::read;
        r.slba = _first + _cursor * _nlb;
        _cursor = (_cursor + 1) % _slots;
        break;
    case rw_mode::randread:
    case rw_mode::randwrite:
    case rw_mode::rw:
        r.is_read = _mode == rw_mode::randread || (_mode == rw_mode::rw && _rng() % 100 < _read_pct);
        r.slba = _first + (_rng() % _slots) * _nlb;
        break;
    }
    return r;
}

void stamp_block(uint8_t* block, uint32_t block_size, uint64_t lba, uint32_t generation) {
    block_stamp s{stamp_magic, lba, generation, 0};
    std::memcpy(block, &s, sizeof(s));
    // Payload: a cheap pattern that differs per LBA and generation.
    uint64_t x = lba * 0x9E3779B97F4A7C15ull ^ (uint64_t(generation) << 32 | generation);
    for (uint32_t at = sizeof(s); at + 8 <= block_size; at += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::memcpy(block + at, &x, 8);
    }
    uint32_t crc = transport::crc32c(block, block_size);
    std::memcpy(block + offsetof(block_stamp, crc), &crc, 4);
}

const char* verify_name(verify_result r) {
    switch (r) {
    case verify_result::ok: return "ok";
    case verify_result::corrupted: return "corrupted block (checksum mismatch)";
    case verify_result::misplaced: return "misplaced block (stamped for another LBA)";
    case verify_result::stale: return "stale block (older generation than last written)";
    case verify_result::unwritten: return "block lost (zeroes where data was written)";
    }
    return "?";
}

verify_result check_block(const uint8_t* block, uint32_t block_size, uint64_t lba, uint32_t expected,
                          uint32_t* found_generation) {
    block_stamp s;
    std::memcpy(&s, block, sizeof(s));
    if (found_generation) *found_generation = s.generation;
    if (s.magic != stamp_magic) {
        bool zero = true;
        for (uint32_t i = 0; i < block_size && zero; ++i) zero = block[i] == 0;
        if (zero) return expected == 0 ? verify_result::ok : verify_result::unwritten;
        return verify_result::corrupted;
    }
    // CRC over the block with the CRC field taken as zero.
    uint32_t st = transport::crc32c_begin();
    st = transport::crc32c_update(st, block, offsetof(block_stamp, crc));
    const uint32_t zero = 0;
    st = transport::crc32c_update(st, &zero, 4);
    st = transport::crc32c_update(st, block + sizeof(block_stamp), block_size - sizeof(block_stamp));
    if (transport::crc32c_end(st) != s.crc) return verify_result::corrupted;
    if (s.lba != lba) return verify_result::misplaced;
    if (expected != 0 && s.generation != expected) return verify_result::stale;
    return verify_result::ok;
}

bool verify_map::try_claim(uint64_t slba, uint32_t nlb) {
    const uint64_t b = slba - _first;
    for (uint32_t i = 0; i < nlb; ++i)
        if (_busy[b + i]) return false;
    for (uint32_t i = 0; i < nlb; ++i) _busy[b + i] = true;
    return true;
}

void verify_map::release(uint64_t slba, uint32_t nlb) {
    const uint64_t b = slba - _first;
    for (uint32_t i = 0; i < nlb; ++i) _busy[b + i] = false;
}

unsigned histogram::index_of(uint64_t v) {
    if (v < sub) return static_cast<unsigned>(v);
    const unsigned msb = 63 - static_cast<unsigned>(std::countl_zero(v));
    const unsigned shift = msb - sub_bits;
    return (shift + 1) * sub + static_cast<unsigned>((v >> shift) - sub);
}

uint64_t histogram::upper_of(unsigned idx) {
    if (idx < sub) return idx;
    const unsigned shift = idx / sub - 1;
    const uint64_t base = (uint64_t(sub) + idx % sub) << shift;
    return base + (uint64_t(1) << shift) - 1;
}

void histogram::record(uint64_t ns) {
    unsigned i = index_of(ns);
    if (i >= _buckets.size()) i = static_cast<unsigned>(_buckets.size() - 1);
    ++_buckets[i];
    ++_count;
    _sum += ns;
    if (ns > _max) _max = ns;
    if (ns < _min) _min = ns;
}

void histogram::merge(const histogram& o) {
    for (size_t i = 0; i < _buckets.size(); ++i) _buckets[i] += o._buckets[i];
    _count += o._count;
    _sum += o._sum;
    _max = std::max(_max, o._max);
    _min = std::min(_min, o._min);
}

uint64_t histogram::percentile(double q) const {
    if (_count == 0) return 0;
    const uint64_t rank = static_cast<uint64_t>(q * double(_count) + 0.5);
    uint64_t seen = 0;
    for (size_t i = 0; i < _buckets.size(); ++i) {
        seen += _buckets[i];
        if (seen >= rank && seen > 0) return std::min(upper_of(static_cast<unsigned>(i)), _max);
    }
    return _max;
}

uint64_t parse_bytes(const std::string& s) {
    size_t i = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == 0 || i > 15) throw std::invalid_argument("'" + s + "' is not a size (e.g. 4k, 128k, 1m, 4096)");
    uint64_t n = std::stoull(s.substr(0, i));
    std::string u = s.substr(i);
    for (auto& c : u) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (u.empty() || u == "b") return n;
    if (u == "k" || u == "kib") return n << 10;
    if (u == "m" || u == "mib") return n << 20;
    if (u == "g" || u == "gib") return n << 30;
    if (u == "t" || u == "tib") return n << 40;
    throw std::invalid_argument("'" + s + "': unknown unit '" + u + "' (k, m, g, t)");
}

}  // namespace ferry::perf
