// What the SMART / Health and Error Information log pages report: I/O counters per namespace
// and a bounded ring of errors per controller.
#pragma once

#include <time.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace ferry::target {

class ns_stats;

// Busy time is reported in minutes: the coarse clock (a few ns, no syscall) is precise enough
// for the hot path.
inline uint64_t coarse_now_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

// The I/O of one namespace through one host I/O queue. Written only by the reactor that owns
// the queue (plain load + store: no read-modify-write, no cache line shared with another
// writer); read with relaxed loads by the admin queue's reactor. One cache line per queue so
// queues on different reactors never write the same line.
struct alignas(64) ns_io_counters {
    std::atomic<uint64_t> read_commands{0};   // Read, Compare
    std::atomic<uint64_t> write_commands{0};  // Write
    std::atomic<uint64_t> read_units{0};      // 512-byte units read (Read)
    std::atomic<uint64_t> write_units{0};     // 512-byte units written (Write)
    std::atomic<uint64_t> media_errors{0};    // Read/Write completed by the store with SCT 2h
    std::atomic<uint64_t> busy_ns{0};         // closed periods with commands outstanding
    std::atomic<uint64_t> busy_since_ns{0};   // start of the current busy period, 0 when idle
    uint32_t outstanding = 0;                 // owner only
    ns_stats* stats = nullptr;                // whose live counters these are (set by attach)

    // Owner only.
    static void add(std::atomic<uint64_t>& c, uint64_t n) {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
};

struct io_totals {
    uint64_t read_commands = 0, write_commands = 0, read_units = 0, write_units = 0, media_errors = 0, busy_ns = 0;
    io_totals& operator+=(const io_totals& o);
};

// The counters of one namespace over the life of the target (not of one controller): live
// queues' counters plus what closed queues left behind. The lock is taken on the control path
// only (queue connect and close, log page reads), never per command.
class ns_stats {
public:
    std::shared_ptr<ns_io_counters> attach();
    // Folds the counters of a closing queue into the totals; the queue must be idle.
    void detach(const std::shared_ptr<ns_io_counters>& c);
    io_totals read(uint64_t now_ns) const;

private:
    mutable std::mutex _lock;
    io_totals _closed;
    std::vector<std::shared_ptr<ns_io_counters>> _live;
};

// Error Information log (LID 01h) entries of one controller, newest first, at most
// `capacity`. Errors complete on any of the controller's queues, on several reactors, so the
// ring has a lock; it is taken only on the error path and by log page reads.
class error_log {
public:
    static constexpr unsigned capacity = 64;  // Identify ELPE + 1

    void record(uint16_t sqid, uint16_t cid, uint16_t status, uint16_t param_loc, uint64_t lba, uint32_t nsid);
    // `capacity` 64-byte entries (unused ones zero), newest first.
    std::vector<uint8_t> page() const;
    uint64_t count() const;  // errors recorded over the controller's life

private:
    struct entry {
        uint64_t count;
        uint16_t sqid, cid, status, param_loc;
        uint64_t lba;
        uint32_t nsid;
    };
    mutable std::mutex _lock;
    std::array<entry, capacity> _ring{};
    uint64_t _count = 0;
};

}  // namespace ferry::target
