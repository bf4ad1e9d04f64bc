// The user-space PCIe NVMe controller driver (reference sections 5.1-5.6).
//
// A pcie_controller owns one controller's registers and its admin queue. The admin queue
// belongs to the controller's admin thread; other threads send it commands and wait (control
// path only: queue creation and deletion, identify, abort, reset). The admin thread also
// watches CSTS every 100 ms for a fatal status (CFS: reset the controller) or a vanished
// device (all ones: fail everything with a path error).
//
// I/O queue pairs are created on demand, one per host I/O queue, and are then used by one
// reactor alone without locks: SQ entries, a release fence, one tail doorbell per batch;
// completions by phase tag, one head doorbell per batch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "env/dma.hh"
#include "nvme/block_queue.hh"
#include "nvme/spec.hh"

namespace ferry::nvme {

// Access to BAR0: a mapped device, or a software model in tests.
class register_file {
public:
    virtual ~register_file() = default;
    virtual uint32_t read32(uint32_t offset) = 0;
    virtual void write32(uint32_t offset, uint32_t value) = 0;
    // The 32-bit doorbell at `offset` (>= 0x1000), written directly on the I/O path.
    virtual volatile uint32_t* doorbell(uint32_t offset) = 0;

    uint64_t read64(uint32_t offset) {
        uint64_t lo = read32(offset);
        return lo | (uint64_t{read32(offset + 4)} << 32);
    }
    void write64(uint32_t offset, uint64_t v) {
        write32(offset, static_cast<uint32_t>(v));
        write32(offset + 4, static_cast<uint32_t>(v >> 32));
    }
};

namespace pcie_reg {
inline constexpr uint32_t cap = 0x00, vs = 0x08, cc = 0x14, csts = 0x1C, aqa = 0x24, asq = 0x28, acq = 0x30,
                          doorbells = 0x1000;
constexpr uint32_t cap_mqes(uint64_t cap) {
    return static_cast<uint32_t>(cap & 0xFFFF);
}
constexpr uint32_t cap_to_ms(uint64_t cap) {
    return static_cast<uint32_t>((cap >> 24) & 0xFF) * 500;
}
constexpr uint32_t cap_dstrd(uint64_t cap) {
    return static_cast<uint32_t>((cap >> 32) & 0xF);
}
constexpr uint32_t cap_mpsmin(uint64_t cap) {
    return static_cast<uint32_t>((cap >> 48) & 0xF);
}
constexpr bool cap_css_nvm(uint64_t cap) {
    return (cap >> 37) & 1;
}
inline constexpr uint32_t cc_en = 1, cc_shn_normal = 1u << 14, cc_iosqes = 6u << 16, cc_iocqes = 4u << 20;
inline constexpr uint32_t csts_rdy = 1, csts_cfs = 2, csts_shst_mask = 3u << 2, csts_shst_complete = 2u << 2;
}  // namespace pcie_reg

// The ring mechanics of one SQ/CQ pair. Not thread-safe.
class queue_pair {
public:
    queue_pair() = default;
    queue_pair(uint16_t qid, uint16_t entries, sqe* sq, cqe* cq, volatile uint32_t* sq_doorbell,
               volatile uint32_t* cq_doorbell)
        : _qid(qid), _entries(entries), _sq(sq), _cq(cq), _sq_db(sq_doorbell), _cq_db(cq_doorbell) {}

    uint16_t qid() const { return _qid; }
    uint16_t entries() const { return _entries; }
    // One slot always stays empty (tail + 1 == head means full).
    bool full() const { return static_cast<uint16_t>((_tail + 1) % _entries) == _sq_head; }
    void push(const sqe& cmd) {
        _sq[_tail] = cmd;
        _tail = static_cast<uint16_t>((_tail + 1) % _entries);
    }
    // Tells the controller about pushed entries: they must be in memory before it sees the tail
    // (a release store: one plain store on x86; an atomic one so that a software model of the
    // device, on another thread, is race-free too).
    void ring() {
        if (_tail == _rung) return;
        __atomic_store_n(_sq_db, uint32_t{_tail}, __ATOMIC_RELEASE);
        _rung = _tail;
    }
    // Calls on_cqe(const cqe&) for every new completion, then writes the CQ head doorbell once.
    template <class F>
    unsigned reap(F&& on_cqe) {
        unsigned n = 0;
        for (;;) {
            volatile const cqe* e = &_cq[_cq_head];
            // Acquire: the rest of the entry is read after the phase says it is new. (cqe is
            // packed, but CQ entries are 16-byte aligned, so its status word is 2-byte aligned.)
            auto* status_word = reinterpret_cast<volatile const uint16_t*>(
                reinterpret_cast<volatile const uint8_t*>(e) + offsetof(cqe, status));
            const uint16_t status = __atomic_load_n(status_word, __ATOMIC_ACQUIRE);
            if ((status & 1) != _phase) break;
            cqe c;
            c.dw0 = e->dw0;
            c.dw1 = e->dw1;
            c.sqhd = e->sqhd;
            c.sqid = e->sqid;
            c.cid = e->cid;
            c.status = status;
            _sq_head = c.sqhd;
            if (++_cq_head == _entries) {
                _cq_head = 0;
                _phase ^= 1;
            }
            ++n;
            on_cqe(c);
        }
        if (n) __atomic_store_n(_cq_db, uint32_t{_cq_head}, __ATOMIC_RELAXED);
        return n;
    }
    // After the controller forgot the queue (reset): empty rings, phase 1 (the CQ is zeroed).
    void restart() {
        std::fill_n(reinterpret_cast<uint8_t*>(_cq), size_t{_entries} * sizeof(cqe), uint8_t{0});
        _tail = _rung = _sq_head = _cq_head = 0;
        _phase = 1;
    }

private:
    uint16_t _qid = 0;
    uint16_t _entries = 0;
    sqe* _sq = nullptr;
    cqe* _cq = nullptr;
    volatile uint32_t* _sq_db = nullptr;
    volatile uint32_t* _cq_db = nullptr;
    uint16_t _tail = 0, _rung = 0, _sq_head = 0, _cq_head = 0;
    uint16_t _phase = 1;
};

struct pcie_controller_options {
    uint32_t admin_timeout_ms = 30000;
    uint32_t io_timeout_ms = 30000;  // then Abort; after twice this, reset the controller
    uint32_t health_interval_ms = 100;
    uint32_t shutdown_min_ms = 5000;     // CC.SHN: wait at least this long (RTD3E may ask for more)
    uint32_t smart_interval_ms = 10000;  // how often the SMART / Health Information log is read
};

struct pcie_namespace_info {
    uint64_t blocks = 0;
    uint32_t block_size = 0;
    uint8_t dlfeat = 0;
};

enum class controller_state : uint8_t { live, resetting, failed, gone };

class pcie_controller;

// The answer of a job the admin thread runs for a reactor (queue creation or deletion). The
// reactor polls done() and never waits: the admin thread writes the error, then publishes the
// outcome with a release store; done() is an acquire load, so no lock is needed on either side.
class admin_op {
public:
    bool done() const { return _state.load(std::memory_order_acquire) != pending; }
    bool ok() const { return _state.load(std::memory_order_acquire) == succeeded; }
    // Why it failed; read only after done() returned true.
    const std::string& error() const { return _error; }
    // Admin thread (or a caller that runs the job itself because the admin thread is gone).
    void finish(bool ok, std::string error = {}) {
        _error = std::move(error);
        _state.store(ok ? succeeded : failed, std::memory_order_release);
    }

private:
    static constexpr uint8_t pending = 0, succeeded = 1, failed = 2;
    std::atomic<uint8_t> _state{pending};
    std::string _error;
};

// A hardware I/O queue pair with its memory, owned by one reactor. Created and deleted by the
// controller's admin thread: the owner asks (begin_create, begin_delete) and polls the
// returned admin_op; the ring itself is touched only by the owner, and only while the queue
// exists on the device. A pending job holds a reference, so the memory the device may still
// use (SQ, CQ, PRP lists) outlives the owner's handle until the device has deleted the queue.
class hw_queue : public std::enable_shared_from_this<hw_queue> {
public:
    ~hw_queue();
    hw_queue(const hw_queue&) = delete;
    hw_queue& operator=(const hw_queue&) = delete;

    queue_pair& ring() { return _ring; }
    uint16_t qid() const { return _qid; }
    uint16_t entries() const { return _entries; }
    // PRP list page of command slot `cid` (one page per slot).
    uint64_t* prp_list(uint16_t cid) const {
        return reinterpret_cast<uint64_t*>(_region.data() + _lists + cid * 4096ul);
    }
    uint64_t prp_list_iova(uint16_t cid) const { return _region.iova(prp_list(cid)); }
    pcie_controller& controller() const { return _ctrl; }
    // The controller generation the queue was last created in (a reset makes it stale).
    // Written by the admin thread: read it only after a creation's admin_op reported success.
    uint32_t generation() const { return _generation; }
    // Owner: (re-)creates the queue on the device (after a reset the rings start empty). The
    // owner leaves the ring alone until the op is done.
    std::shared_ptr<admin_op> begin_create();
    // Owner: deletes the queue on the device if it exists there (if the controller was reset,
    // disabled or is gone, there is nothing to delete). Runs after any earlier creation.
    std::shared_ptr<admin_op> begin_delete();

private:
    friend class pcie_controller;
    hw_queue(pcie_controller& c, uint16_t qid, uint16_t entries);
    pcie_controller& _ctrl;
    const uint16_t _qid;
    const uint16_t _entries;
    env::dma_region _region;
    size_t _cq_offset = 0;
    size_t _lists = 0;
    queue_pair _ring;
    // Admin thread only (jobs run in order), except generation() as documented.
    bool _created = false;
    uint32_t _generation = 0;
    // The delete job gave the qid back (before its op finished, so an owner that deletes then
    // creates finds it free); the destructor does so otherwise. Admin thread, then the last owner.
    bool _qid_released = false;
};

class pcie_controller {
public:
    // `name` (the PCI address) appears in every log line and error.
    pcie_controller(std::string name, std::unique_ptr<register_file> regs, pcie_controller_options opts = {});
    ~pcie_controller();  // clean shutdown (CC.SHN) unless the device is gone
    pcie_controller(const pcie_controller&) = delete;
    pcie_controller& operator=(const pcie_controller&) = delete;

    // Disables, sets up the admin queue, enables, identifies and asks for I/O queues, then
    // starts the admin thread. Throws std::runtime_error naming the controller.
    void start();
    // Normal shutdown: CC.SHN, wait for SHST complete; stops the admin thread.
    void shutdown();

    const std::string& name() const { return _name; }
    const identify_ctrl& identify() const { return *_id; }
    uint32_t max_transfer_bytes() const { return _max_transfer; }
    uint16_t max_queue_entries() const { return _mqes; }
    uint16_t io_queues_granted() const { return _granted; }
    uint32_t page_size() const { return 4096; }
    controller_state state() const { return _state.load(std::memory_order_acquire); }
    uint32_t generation() const { return _generation.load(std::memory_order_acquire); }
    const pcie_controller_options& options() const { return _opts; }

    // The SSD's SMART / Health Information as last read by the admin thread (at start, then
    // every smart_interval_ms); nothing if it never answered. Never blocks. Thread-safe.
    std::optional<device_health> health() const;

    // Identify Namespace; nullopt-like zero blocks if `nsid` is not active. Thread-safe.
    pcie_namespace_info namespace_info(uint32_t nsid);
    // A hardware SQ/CQ pair with `entries` slots whose creation has been handed to the admin
    // thread (`created` says when it is done). Never waits. Throws std::runtime_error when the
    // controller is not live or no hardware queue is left.
    std::shared_ptr<hw_queue> create_queue(uint16_t entries, std::shared_ptr<admin_op>& created);
    // Asynchronous requests from an I/O queue owner (never waits).
    void request_abort(uint16_t qid, uint16_t cid);
    void request_reset(const std::string& why);

    // Runs one admin command (no data) on the admin thread and waits. Returns the status
    // (SCT<<8|SC convention) and fills `out` if given. Control path only: never on a reactor.
    uint16_t admin(sqe cmd, cqe* out = nullptr);
    // Resets the controller (CC.EN=0 first) and waits, so the device no longer references the
    // memory of any I/O queue or its buffers: for a caller about to free memory the device
    // might still use. Blocks; only for paths that have nothing safer left.
    void reset_now(const std::string& why);

private:
    friend class hw_queue;
    uint16_t execute_admin(sqe& cmd, cqe* out);  // admin thread (or start())
    // Runs `job` where the admin queue may be used: right here during bring-up or on the admin
    // thread itself, else on the admin thread while this thread waits.
    uint16_t on_admin_thread(const std::function<uint16_t()>& job);
    // Identify CNS `cns` into the admin data page, copied to `out` (4 KiB). Admin thread.
    uint16_t identify(uint8_t cns, uint32_t nsid, void* out);
    void refresh_health();     // admin thread (or start())
    void read_capabilities();  // first start only: CAP and what derives from it
    void enable();
    void disable();
    void health_check();
    void reset_controller(const std::string& why);
    void shut_down_device();  // CC.SHN, or CC.EN=0 when the device does not finish in time
    void admin_loop();
    void post(std::function<void()> job);
    uint16_t create_pair(uint16_t qid, uint16_t entries, uint64_t sq_iova, uint64_t cq_iova);
    bool delete_pair(uint16_t qid);  // false if the device may still own the queue
    void release_qid(uint16_t qid);
    volatile uint32_t* sq_doorbell(uint16_t qid) { return _regs->doorbell(pcie_reg::doorbells + (2u * qid) * _stride); }
    volatile uint32_t* cq_doorbell(uint16_t qid) {
        return _regs->doorbell(pcie_reg::doorbells + (2u * qid + 1) * _stride);
    }

    const std::string _name;
    std::unique_ptr<register_file> _regs;
    const pcie_controller_options _opts;
    // Set by start() before the admin thread exists and never written again (a reset keeps
    // them), so reactors read them without synchronisation.
    uint64_t _cap = 0;
    uint32_t _stride = 4;
    uint16_t _mqes = 0;
    uint16_t _granted = 0;
    uint32_t _max_transfer = 0;
    std::unique_ptr<identify_ctrl> _id;
    // Admin queue: start(), then the admin thread alone.
    env::dma_region _admin_mem;  // admin SQ, CQ and one data page
    queue_pair _admin;
    uint16_t _next_cid = 0;
    bool _admin_timed_out = false;
    std::atomic<controller_state> _state{controller_state::failed};
    std::atomic<uint32_t> _generation{0};
    std::atomic<bool> _started{false};

    mutable std::mutex _health_lock;
    std::optional<device_health> _health;
    uint64_t _next_health_ns = 0;  // admin thread
    bool _health_failed = false;   // admin thread: logged once

    std::mutex _qid_lock;
    std::vector<bool> _qid_used;

    std::mutex _jobs_lock;
    std::condition_variable _jobs_cv;
    std::deque<std::function<void()>> _jobs;
    bool _stop = false;
    bool _admin_closed = true;  // no admin thread takes jobs: post() runs them in the caller
    std::thread _admin_thread;
    std::atomic<std::thread::id> _admin_thread_id{};
};

// Opens (once per process) the controller at PCI address `bdf` through VFIO and starts it.
// Several namespaces on one controller share it.
std::shared_ptr<pcie_controller> open_pcie_controller(const std::string& bdf);
// Test hook: open_pcie_controller(`bdf`) returns `ctrl` (started, e.g. on a software model)
// for as long as it lives, so a target configuration can name it as a pcie device.
void register_pcie_controller(const std::string& bdf, const std::shared_ptr<pcie_controller>& ctrl);

class block_store;
// A namespace store over a started controller (make_pcie_store(bdf, nsid) opens it by address).
std::unique_ptr<block_store> make_pcie_store(std::shared_ptr<pcie_controller> ctrl, uint32_t nsid);

}  // namespace ferry::nvme
