// The namespace queue interface: every backing store (RAM, null, later io_uring files and
// VFIO-driven SSD queue pairs) accepts NVMe I/O commands on a queue owned by one reactor.
// The target does not care which implementation it talks to.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "env/dma_pool.hh"
#include "nvme/spec.hh"

namespace ferry::nvme {

// Dataset Management range `index` of a command's data: the list may straddle the iovecs
// (pool chunks). The caller checked that the data holds the range (check_io).
inline dsm_range dsm_range_at(std::span<const iovec> data, unsigned index) {
    dsm_range r{};
    auto* dst = reinterpret_cast<uint8_t*>(&r);
    size_t skip = size_t{index} * sizeof(r), need = sizeof(r);
    for (const iovec& v : data) {
        if (skip >= v.iov_len) {
            skip -= v.iov_len;
            continue;
        }
        const size_t n = std::min(need, v.iov_len - skip);
        std::memcpy(dst, static_cast<const uint8_t*>(v.iov_base) + skip, n);
        dst += n;
        need -= n;
        skip = 0;
        if (need == 0) break;
    }
    return r;
}

// Receives the outcome of one submitted command. Implemented by the caller (the target's
// request); invoked on the owning reactor thread, possibly before submit() returns.
class io_completion {
public:
    virtual void complete(uint16_t status) = 0;  // SCT<<8|SC [| status_dnr]

protected:
    ~io_completion() = default;
};

// One queue of a backing store. Not thread-safe: a queue belongs to one reactor.
class block_queue {
public:
    virtual ~block_queue() = default;
    // Submits an already validated I/O command (opcode, SLBA/NLB in range). `data` holds the
    // command's payload (host->ctrl) or receives it (ctrl->host); its total size is exact.
    virtual void submit(const sqe& cmd, std::span<const iovec> data, io_completion& done) = 0;
    // Submits what submit() queued and reaps finished commands; returns how many completed.
    // The owner calls it while in_flight() > 0. Synchronous stores return 0.
    virtual unsigned poll() { return 0; }
    // Commands submitted but not yet completed.
    virtual unsigned in_flight() const { return 0; }
    // True if its commands complete on the store's own threads, which poke the owning reactor
    // (env::thread_wake_hook()) as they do: the owner may sleep while they are in flight rather
    // than poll for them (rbd: a completion takes hundreds of microseconds to milliseconds,
    // and a reactor spinning through that takes the CPU librbd's threads need).
    virtual bool completes_by_wakeup() const { return false; }
    // What backs the queue, for logs ("hardware queue 3 of 0000:00:04.0"); empty if nothing to say.
    virtual std::string describe() const { return {}; }

    // Setting up and giving back a queue without blocking the owner's reactor. An SSD's
    // hardware queue is created and deleted by its controller's admin thread (seconds, when
    // the SSD is in a reset), so create_queue() may return a queue still being set up; the
    // owner polls setup() (no commands before ready) and, when done with the queue, calls
    // close() and keeps the queue, and the buffers of its commands, until released(), polling
    // it meanwhile. Software stores are ready at once and need no release.
    enum class setup_state : uint8_t { pending, ready, failed };
    // `why` receives the reason of a failure.
    virtual setup_state setup(std::string& why) {
        (void)why;
        return setup_state::ready;
    }
    // No more commands will be submitted; those in flight still complete through poll().
    virtual void close() {}
    // The device references neither the queue's memory nor its commands' buffers any more.
    virtual bool released() const { return in_flight() == 0; }
};

// The backend queues made for one host queue (one per namespace). A store may share a
// resource among its queues in the group: the PCIe store gives each SSD one hardware queue
// pair per host queue, however many of its namespaces the subsystem has. Needed only while
// the queues are created; what it holds is reference counted by the queues too.
class queue_group {
public:
    std::shared_ptr<void> find(const void* key) const {
        for (const auto& [k, v] : _items)
            if (k == key) return v;
        return nullptr;
    }
    void add(const void* key, std::shared_ptr<void> value) { _items.emplace_back(key, std::move(value)); }

private:
    std::vector<std::pair<const void*, std::shared_ptr<void>>> _items;
};

// What an SSD says about its own health (fields of its SMART / Health Information log page),
// merged into the target's log page for the namespaces it backs.
struct device_health {
    uint8_t critical_warning = 0;
    uint16_t temperature_kelvin = 0;  // composite temperature
    uint8_t available_spare = 0;      // percent
    uint8_t available_spare_threshold = 0;
    uint8_t percentage_used = 0;
    uint64_t media_errors = 0;  // low 64 bits of the SSD's 128-bit counter
    uint64_t error_log_entries = 0;
};

// The store's client was fenced (Ceph blocklisted it after another client broke its lock): it
// can hold no lock again until it is reopened.
class fenced_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A backing store: geometry plus a factory of per-reactor queues.
class block_store {
public:
    virtual ~block_store() = default;
    virtual uint64_t block_count() const = 0;
    virtual uint32_t block_size() const = 0;
    virtual std::string describe() const = 0;
    // Largest transfer of one command in bytes; 0 = no limit of the store's own.
    virtual uint32_t max_transfer_bytes() const { return 0; }
    // Which optional NVM commands the store carries out (Identify ONCS bits: Compare 0x01,
    // Dataset Management 0x04, Write Zeroes 0x08) and what deallocated blocks read as
    // (Identify Namespace DLFEAT). Software stores do all and read zeroes; an SSD says.
    virtual uint16_t optional_commands() const { return 0x01 | 0x04 | 0x08; }
    virtual uint8_t deallocate_features() const { return 0x09; }  // zeroes; Write Zeroes may deallocate
    // Every Read returns zeroes and the store leaves the caller's read buffers as they are: the
    // caller sends zeroes of its own rather than the buffers (the null store). A memset of each
    // read buffer was 11% of a reactor at 128 KiB reads; not filling them at all would send
    // whatever the pool chunks last held, another host's data. Such a store also takes a Read
    // with no buffers at all (an empty data list): the target gives it none.
    virtual bool reads_zeroes() const { return false; }
    // Whether a completed write may still be in a volatile cache until Flush (Identify VWC).
    // An rbd image opened with rbd_cache=false stores a write before acknowledging it.
    virtual bool volatile_write_cache() const { return true; }
    // The device's own health, if the store is a device that reports one (an SSD). Never
    // blocks: a store that must ask its device returns the last answer it has (or nothing yet).
    // Thread-safe.
    virtual std::optional<device_health> health() const { return std::nullopt; }
    // Grows the store to `block_count` blocks (never shrinks), while queues may be running on
    // other threads: their commands stay in range of the old size until the caller publishes
    // the new one. Throws std::runtime_error saying why it cannot (default: not supported).
    virtual void grow(uint64_t block_count) {
        throw std::runtime_error(describe() + ": cannot grow to " + std::to_string(block_count) + " blocks");
    }
    // Fencing among gateways that serve one shared store (rbd: the image's managed exclusive
    // lock; Ceph blocklists the holder whose lock is broken, so its late writes fail). Blocking
    // calls for the management side, never a reactor; throw std::runtime_error saying why.
    // The default: the store cannot be shared (supports_exclusive_lock() false, calls throw).
    virtual bool supports_exclusive_lock() const { return false; }
    // Takes the lock for this store's client. `break_holder`: first breaks (and so fences) a
    // lock another client holds; otherwise a held lock fails the call. Returns the holders
    // broken ("" = none). Holding it already is success.
    virtual std::string acquire_exclusive_lock(bool break_holder) {
        (void)break_holder;
        throw std::runtime_error(describe() + ": has no exclusive lock");
    }
    // Lets go of the lock (after its in-flight writes); not holding it is success.
    virtual void release_exclusive_lock() { throw std::runtime_error(describe() + ": has no exclusive lock"); }
    // Whether this store's client holds the lock now (it can lose it: a break by another).
    virtual bool holds_exclusive_lock() const { return false; }
    // `depth` is the number of commands the caller may have outstanding on the queue (on all
    // queues of its group together). `buffers` is the pool the caller's data buffers come
    // from: a device needs their addresses (software stores ignore it; it may be null for
    // them). `group` (may be null) gathers the queues made for one host queue. Never blocks:
    // the queue may still be pending (see block_queue::setup()). Throws std::runtime_error
    // when no queue can be had (e.g. no hardware queue left).
    virtual std::unique_ptr<block_queue> create_queue(unsigned depth, const env::dma_pool* buffers,
                                                      queue_group* group) = 0;
};

// RAM-backed store: a private anonymous mapping, populated on first write so a large
// namespace costs only what has been written. Deallocate returns pages to the kernel.
// `max_transfer_bytes` (0 = none) makes it take at most that much per command, as an SSD with
// that MDTS would (tests of the target's command splitting).
std::unique_ptr<block_store> make_ram_store(uint64_t block_count, uint32_t block_size, uint32_t max_transfer_bytes = 0);
// Null store: reads return zeroes (reads_zeroes(): it never fills a read buffer), writes are
// dropped. For measuring the target alone.
std::unique_ptr<block_store> make_null_store(uint64_t block_count, uint32_t block_size);
// A regular file or block device driven through io_uring (O_DIRECT where the file system
// allows it). `size_bytes` 0 uses the file's size; a larger size extends a regular file, and
// a missing file is created with it. Flush and FUA writes are made durable with fdatasync
// semantics. Throws std::runtime_error naming the path.
std::unique_ptr<block_store> make_file_store(const std::string& path, uint32_t block_size, uint64_t size_bytes);
// Namespace `nsid` of the PCIe NVMe controller at `bdf` ("0000:00:04.0"), driven from user
// space through VFIO; each queue is a hardware I/O queue pair of its own. Geometry and
// transfer limit come from the device. Throws std::runtime_error saying what is wrong.
std::unique_ptr<block_store> make_pcie_store(const std::string& bdf, uint32_t nsid);

// A Ceph RBD image through librbd (opened by the calling thread, which must not be a reactor:
// librbd's threads inherit its CPU affinity). Size from the image. Throws std::runtime_error
// naming pool/image (also when ferry was built without librbd).
struct rbd_options {
    std::string pool;
    std::string image;
    std::string ceph_conf;         // "" = librados' default search (CEPH_CONF, /etc/ceph/ceph.conf)
    std::string client = "admin";  // cephx user, without "client."
    uint32_t block_size = 4096;
    unsigned timeout_s = 5;  // mon connect/op timeout; OSD ops get three times this
};
std::unique_ptr<block_store> make_rbd_store(const rbd_options& options);
// The NVMe status for a librbd result `err` (< 0) of a command with `opcode`.
uint16_t rbd_error_status(int err, uint8_t opcode);

}  // namespace ferry::nvme
