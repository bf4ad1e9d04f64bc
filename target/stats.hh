// What the SMART / Health and Error Information log pages report: I/O counters per namespace
// and a bounded ring of errors per controller.
#pragma once

#include <time.h>

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
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

// Which queue and namespace a counter set belongs to, so that the management API can give
// the counters per subsystem, namespace, controller and queue. Set before the set is attached
// and never changed after.
struct counter_labels {
    std::string nqn;      // subsystem
    std::string hostnqn;  // the controller's host
    uint16_t cntlid = 0;
    uint16_t qid = 0;
    uint32_t nsid = 0;
};

// I/O completions with an error status, counted by kind: the statuses the I/O path returns by
// name, the rest by status code type. Classified on the error path only.
enum class error_kind : uint8_t {
    invalid_opcode,
    invalid_field,
    invalid_namespace,
    lba_out_of_range,
    data_length,       // SGL data length does not match the command
    internal,          // internal error, data transfer error
    aborted,           // aborted by request or by SQ deletion
    other_generic,     // any other generic status (SCT 0)
    command_specific,  // SCT 1
    media,             // SCT 2: media and data integrity errors, compare failure
    path,              // SCT 3: path related (e.g. an SSD that went away)
    other,             // vendor specific and reserved types
};
inline constexpr unsigned error_kinds = 12;
error_kind classify_error(uint16_t status);
const char* error_kind_name(error_kind k);  // "lba_out_of_range"

// Latency histogram: bucket i (0..20) counts commands that took at most 2^i microseconds and
// more than 2^(i-1); the last bucket the ones above 2^20 us (~1 s).
inline constexpr unsigned latency_buckets = 22;
inline constexpr uint64_t latency_bucket_bound_us(unsigned i) {
    return uint64_t(1) << i;
}
inline unsigned latency_bucket(uint64_t ns) {
    const uint64_t us = (ns + 999) / 1000;  // rounded up: a bucket holds latencies <= its bound
    const unsigned i = us <= 1 ? 0 : unsigned(std::bit_width(us - 1));
    return i < latency_buckets - 1 ? i : latency_buckets - 1;
}

// The I/O of one namespace through one host I/O queue. Written only by the reactor that owns
// the queue (plain load + store: no read-modify-write, no cache line shared with another
// writer); read with relaxed loads by the admin queue's reactor and the management thread.
// Aligned to cache lines so queues on different reactors never write the same line.
struct alignas(64) ns_io_counters {
    // Commands the store carried out (a command refused before it reached the store counts
    // only under `errors`), by opcode: Read, Write, and the rest (Compare, Flush, Write Zeroes,
    // Dataset Management); Compare also in `compare_commands` (SMART counts it as a read).
    std::atomic<uint64_t> read_commands{0};
    std::atomic<uint64_t> write_commands{0};
    std::atomic<uint64_t> other_commands{0};
    std::atomic<uint64_t> compare_commands{0};
    std::atomic<uint64_t> bytes_read{0};     // data of successful Reads
    std::atomic<uint64_t> bytes_written{0};  // data of successful Writes
    std::atomic<uint64_t> media_errors{0};   // Read/Write completed by the store with SCT 2h
    std::atomic<uint64_t> busy_ns{0};        // closed periods with commands outstanding
    std::atomic<uint64_t> busy_since_ns{0};  // start of the current busy period, 0 when idle
    std::atomic<uint64_t> latency_sum_ns{0};
    std::array<std::atomic<uint64_t>, latency_buckets> latency{};  // from the command's arrival to its completion
    std::array<std::atomic<uint64_t>, error_kinds> errors{};       // every error completion, by kind
    uint32_t outstanding = 0;                                      // owner only
    ns_stats* stats = nullptr;                                     // whose live counters these are (set by attach)
    counter_labels labels;                                         // set by attach

    // Owner only.
    static void add(std::atomic<uint64_t>& c, uint64_t n) {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    // A command handed to the store at `now_ns` (the clock the queue read when it arrived).
    void submitted(uint64_t now_ns) {
        if (outstanding++ == 0) busy_since_ns.store(now_ns, std::memory_order_relaxed);
    }
    // The store completed a command that arrived at `arrival_ns`; `now_ns` is read once per
    // completion by the caller.
    void completed(uint8_t opcode, uint32_t data_len, uint16_t status, uint64_t arrival_ns, uint64_t now_ns);
    // Any I/O command of this namespace completed with an error (error path only).
    void count_error(uint16_t status) { add(errors[unsigned(classify_error(status))], 1); }
};

struct io_totals {
    // SMART view: Read + Compare, Write; 512-byte units of Read and Write data.
    uint64_t read_commands = 0, write_commands = 0, read_units = 0, write_units = 0, media_errors = 0, busy_ns = 0;
    // Management view: commands by class (reads = Read only), exact bytes, errors, latency.
    uint64_t reads = 0, writes = 0, others = 0, bytes_read = 0, bytes_written = 0, latency_sum_ns = 0;
    std::array<uint64_t, latency_buckets> latency{};
    std::array<uint64_t, error_kinds> errors{};
    uint64_t commands() const { return reads + writes + others; }
    uint64_t error_count() const;
    io_totals& operator+=(const io_totals& o);
};

// The counters of one namespace over the life of the target (not of one controller): live
// queues' counters plus what closed queues left behind. The lock is taken on the control path
// only (queue connect and close, log page reads, the management API), never per command.
class ns_stats {
public:
    std::shared_ptr<ns_io_counters> attach(counter_labels labels = {});
    // Folds the counters of a closing queue into the totals; the queue must be idle.
    void detach(const std::shared_ptr<ns_io_counters>& c);
    io_totals read(uint64_t now_ns) const;
    // One live queue's counters of this namespace.
    struct queue_snapshot {
        counter_labels labels;
        io_totals io;
    };
    // Everything at once, under one lock: the totals (closed queues included) and each live
    // queue's share of them.
    io_totals read(uint64_t now_ns, std::vector<queue_snapshot>& live) const;

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
