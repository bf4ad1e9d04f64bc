// Ceph RBD image store through librbd's asynchronous C API. The cluster handle and the image
// are opened and closed by the thread that makes and destroys the store (the management
// side, never a reactor), so librbd's own threads get that thread's ordinary CPU affinity.
// Commands are submitted from the owning reactor; librbd calls back on its own threads, and
// the callback only pushes the command's preallocated slot onto the queue's lock-free list,
// which poll() drains on the reactor, and pokes the reactor (env::thread_wake_hook() of the
// thread that made the queue): a reactor with nothing else to do blocks even with commands
// in flight (--idle-spin-us), and the poke writes its eventfd only when it is blocked.
#include <fmt/format.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "env/thread.hh"
#include "nvme/block_queue.hh"

namespace ferry::nvme {

namespace {

class rbd_store;
class rbd_queue;

// A Compare is read into the queue's one bounce buffer of this size, piece by piece, and
// compared on the reactor after each piece: memory bounded per queue whatever the MDTS and
// queue depth, allocated with the queue (not on a command).
constexpr size_t compare_piece_bytes = 128 * 1024;

// One command in flight. Preallocated per queue; `next` links it into the completion list.
struct rbd_op {
    rbd_queue* queue = nullptr;
    io_completion* done = nullptr;
    std::span<const iovec> data;  // Compare: what the host sent
    uint8_t opcode = 0;
    bool fua = false;             // a write whose flush is still to be sent
    uint64_t expect = 0;          // bytes a read must return
    std::atomic<int> pending{0};  // librbd calls outstanding (Dataset Management: one per range)
    std::atomic<int> error{0};    // first negative result
    // librbd completions made whose callback has not returned yet (pending drops to 0, and
    // the command may complete, before the callback is done with the queue).
    std::atomic<int> unreturned{0};
    std::atomic<rbd_op*> next{nullptr};
    // Compare: the command's first byte on the image, its length, what has been compared.
    uint64_t offset = 0, length = 0, compared = 0;
    rbd_op* waiting_next = nullptr;  // Compare: queued for the bounce buffer
};

class rbd_store final : public block_store {
public:
    rbd_store(const rbd_options& o) : _pool(o.pool), _image_name(o.image), _bs(o.block_size) {
        try {
            open(o);
        } catch (...) {
            close_all();
            throw;
        }
    }
    ~rbd_store() override { close_all(); }
    uint64_t block_count() const override { return _blocks; }
    uint32_t block_size() const override { return _bs; }
    bool volatile_write_cache() const override { return false; }  // rbd_cache=false: acked = stored
    std::string describe() const override { return fmt::format("rbd image {}/{}", _pool, _image_name); }
    std::unique_ptr<block_queue> create_queue(unsigned depth, const env::dma_pool*, queue_group*) override;
    bool supports_exclusive_lock() const override { return true; }
    std::string acquire_exclusive_lock(bool break_holder) override;
    void release_exclusive_lock() override;
    bool holds_exclusive_lock() const override {
        int owner = 0;
        return ::rbd_is_exclusive_lock_owner(_image, &owner) == 0 && owner;
    }
    rbd_image_t image() const { return _image; }
    // Its lock is managed by a gateway group: -EROFS then means the lock went to another
    // gateway while a write was on its way (see rbd_queue::finish).
    bool lock_managed() const { return _lock_managed.load(std::memory_order_relaxed); }
    const std::string& name() const { return _name; }

private:
    [[noreturn]] void fail(const std::string& what, int rc) {
        const std::string text = fmt::format("rbd image {}/{}: {}: {}", _pool, _image_name, what, std::strerror(-rc));
        if (rc == -ESHUTDOWN) throw fenced_error(text + " (this client is blocklisted)");  // = EBLOCKLISTED
        throw std::runtime_error(text);
    }
    void open(const rbd_options& o) {
        const std::string client = o.client.empty() ? "admin" : o.client;
        int rc = ::rados_create(&_cluster, client.c_str());
        if (rc < 0) fail("rados_create for client." + client, rc);
        rc = ::rados_conf_read_file(_cluster, o.ceph_conf.empty() ? nullptr : o.ceph_conf.c_str());
        if (rc < 0)
            fail("cannot read Ceph configuration " + (o.ceph_conf.empty() ? "(default paths)" : o.ceph_conf), rc);
        // Writes must be stored when acknowledged (no volatile cache is reported to hosts); a
        // cluster that does not answer must not hang the management API; deallocated blocks
        // must read as zeroes (DLFEAT), so partial objects are zeroed, not skipped.
        const std::pair<const char*, std::string> settings[] = {
            {"rbd_cache", "false"},
            {"client_mount_timeout", std::to_string(o.timeout_s)},
            {"rados_mon_op_timeout", std::to_string(o.timeout_s)},
            {"rados_osd_op_timeout", std::to_string(o.timeout_s * 3)},
            {"rbd_skip_partial_discard", "false"},
        };
        for (const auto& [k, v] : settings) {
            rc = ::rados_conf_set(_cluster, k, v.c_str());
            if (rc < 0) fail(fmt::format("rados_conf_set {}={}", k, v), rc);
        }
        rc = ::rados_connect(_cluster);
        if (rc < 0) {
            ::rados_shutdown(_cluster);
            _cluster = nullptr;
            fail(fmt::format("cannot connect to the cluster as client.{} ({})", client,
                             o.ceph_conf.empty() ? "default configuration" : o.ceph_conf),
                 rc);
        }
        rc = ::rados_ioctx_create(_cluster, _pool.c_str(), &_io);
        if (rc < 0) fail(rc == -ENOENT ? "pool does not exist" : "cannot open the pool", rc);
        rc = ::rbd_open(_io, _image_name.c_str(), &_image, nullptr);
        if (rc < 0) fail(rc == -ENOENT ? "image does not exist" : "cannot open the image", rc);
        uint64_t size = 0;
        rc = ::rbd_get_size(_image, &size);
        if (rc < 0) fail("rbd_get_size", rc);
        if (size < _bs) fail(fmt::format("is {} bytes, smaller than one block", size), -EINVAL);
        _blocks = size / _bs;
        _name = describe();
    }
    void close_all() {
        if (_image) ::rbd_close(_image);
        _image = nullptr;
        if (_io) ::rados_ioctx_destroy(_io);
        _io = nullptr;
        if (_cluster) ::rados_shutdown(_cluster);
        _cluster = nullptr;
    }

    std::string _pool, _image_name, _name;
    uint32_t _bs;
    uint64_t _blocks = 0;
    rados_t _cluster = nullptr;
    rados_ioctx_t _io = nullptr;
    rbd_image_t _image = nullptr;
    std::atomic<bool> _lock_managed{false};
};

// librbd's managed lock (rbd_lock_acquire) switches the image to a policy under which its
// holder refuses to hand the lock to another client that asks for it: only a break takes it,
// and a break blocklists the holder's client address (rbd_blocklist_on_break_lock, default on).
std::string rbd_store::acquire_exclusive_lock(bool break_holder) {
    _lock_managed.store(true, std::memory_order_relaxed);
    int owner = 0;
    int rc = ::rbd_is_exclusive_lock_owner(_image, &owner);
    if (rc < 0) fail("cannot tell whether this client holds the exclusive lock", rc);
    if (owner) return {};
    std::string broken;
    rbd_lock_mode_t mode{};
    char* owners[8] = {};
    size_t n = 8;
    rc = ::rbd_lock_get_owners(_image, &mode, owners, &n);
    if (rc == -ENOENT)
        n = 0;  // nobody holds it
    else if (rc < 0)
        fail("cannot read the exclusive lock's holders (is the exclusive-lock feature on?)", rc);
    if (n > 0) {
        std::vector<std::string> holders(owners, owners + n);
        ::rbd_lock_get_owners_cleanup(owners, n);
        if (!break_holder) fail(fmt::format("the exclusive lock is held by {}", holders.front()), -EBUSY);
        for (const auto& h : holders) {
            rc = ::rbd_lock_break(_image, RBD_LOCK_MODE_EXCLUSIVE, h.c_str());
            if (rc < 0 && rc != -ENOENT) fail("cannot break the exclusive lock held by " + h, rc);
            broken += (broken.empty() ? "" : ", ") + h;
        }
    }
    rc = ::rbd_lock_acquire(_image, RBD_LOCK_MODE_EXCLUSIVE);
    if (rc < 0) fail("cannot take the exclusive lock", rc);
    return broken;
}

void rbd_store::release_exclusive_lock() {
    int owner = 0;
    int rc = ::rbd_is_exclusive_lock_owner(_image, &owner);
    if (rc < 0) fail("cannot tell whether this client holds the exclusive lock", rc);
    if (!owner) return;
    rc = ::rbd_lock_release(_image);
    if (rc < 0) fail("cannot release the exclusive lock", rc);
}

class rbd_queue final : public block_queue {
public:
    rbd_queue(rbd_store& store, unsigned depth)
        : _store(store),
          _wake(env::thread_wake_hook()),
          _ops(depth ? depth : 1),
          _compare_buffer(std::make_unique<uint8_t[]>(compare_piece_bytes)) {
        for (auto& o : _ops) o.queue = this;
        _free.reserve(_ops.size());
        for (size_t i = _ops.size(); i-- > 0;) _free.push_back(&_ops[i]);
    }
    ~rbd_queue() override { wait_for_callbacks(); }
    void submit(const sqe& cmd, std::span<const iovec> data, io_completion& done) override;
    unsigned poll() override;
    unsigned in_flight() const override { return _in_flight; }
    bool completes_by_wakeup() const override { return true; }  // push_done() pokes the reactor
    // A command completes through poll() before its librbd callback has returned.
    bool released() const override { return _in_flight == 0 && unreturned() == 0; }
    std::string describe() const override { return _store.name(); }

    // librbd thread: a call of `op` finished with `r`.
    static void on_complete(rbd_completion_t c, void* arg) {
        auto* op = static_cast<rbd_op*>(arg);
        const ssize_t r = ::rbd_aio_get_return_value(c);
        ::rbd_aio_release(c);
        if (r < 0) {
            int expected = 0;
            op->error.compare_exchange_strong(expected, static_cast<int>(r), std::memory_order_relaxed);
        } else if (op->expect && static_cast<uint64_t>(r) != op->expect) {
            int expected = 0;
            op->error.compare_exchange_strong(expected, -EIO, std::memory_order_relaxed);
        }
        if (op->pending.fetch_sub(1, std::memory_order_acq_rel) == 1) op->queue->push_done(op);
        // The last touch of the queue: ~rbd_queue may free it (and its reactor go) right after.
        op->unreturned.fetch_sub(1, std::memory_order_release);
    }

private:
    // Multi-producer push (a Treiber stack); the reactor takes the whole list at once.
    void push_done(rbd_op* op) {
        // Copied first: once the op is on the list, the reactor may complete it and free the queue.
        const env::wake_hook wake = _wake;
        rbd_op* head = _done.load(std::memory_order_relaxed);
        do {
            op->next.store(head, std::memory_order_relaxed);
        } while (!_done.compare_exchange_weak(head, op, std::memory_order_seq_cst, std::memory_order_relaxed));
        wake();
    }
    rbd_op* take_slot(io_completion& done, uint8_t opcode) {
        if (_free.empty()) return nullptr;
        rbd_op* op = _free.back();
        _free.pop_back();
        op->done = &done;
        op->opcode = opcode;
        op->fua = false;
        op->expect = 0;
        op->data = {};
        op->error.store(0, std::memory_order_relaxed);
        op->pending.store(1, std::memory_order_relaxed);  // the submitter's reference
        ++_in_flight;
        return op;
    }
    rbd_completion_t completion(rbd_op* op) {
        rbd_completion_t c = nullptr;
        if (::rbd_aio_create_completion(op, &rbd_queue::on_complete, &c) < 0) return nullptr;
        op->pending.fetch_add(1, std::memory_order_relaxed);
        op->unreturned.fetch_add(1, std::memory_order_relaxed);
        return c;
    }
    // A librbd call refused at once: undo what completion() counted, keep the error.
    void refused(rbd_op* op, int rc, rbd_completion_t c) {
        if (c) {
            ::rbd_aio_release(c);
            op->pending.fetch_sub(1, std::memory_order_relaxed);
            op->unreturned.fetch_sub(1, std::memory_order_relaxed);
        }
        int expected = 0;
        op->error.compare_exchange_strong(expected, rc, std::memory_order_relaxed);
    }
    // Drops the submitter's reference: the command completes through poll() once every
    // librbd call it made is back.
    void release_submitter(rbd_op* op) {
        if (op->pending.fetch_sub(1, std::memory_order_acq_rel) == 1) push_done(op);
    }
    bool finish(rbd_op* op);
    void read_compare_piece(rbd_op* op);
    bool compare_piece(const rbd_op* op) const;
    void wait_for_callbacks();
    // Callbacks not returned, all commands together (teardown only: reads every slot).
    unsigned unreturned() const {
        unsigned n = 0;
        for (const rbd_op& o : _ops) n += static_cast<unsigned>(o.unreturned.load(std::memory_order_acquire));
        return n;
    }

    rbd_store& _store;
    const env::wake_hook _wake;  // of the reactor that owns the queue
    std::vector<rbd_op> _ops;
    std::vector<rbd_op*> _free;
    unsigned _in_flight = 0;
    std::unique_ptr<uint8_t[]> _compare_buffer;  // compare_piece_bytes, of _compare_owner
    rbd_op* _compare_owner = nullptr;
    rbd_op* _compare_waiting = nullptr;  // FIFO through waiting_next
    rbd_op* _compare_waiting_last = nullptr;
    alignas(64) std::atomic<rbd_op*> _done{nullptr};
};

// Normally nothing to wait for (the owner waited for released()). At shutdown the reactor
// gives up on its connections after 10 s, sooner than librbd fails an op to an unreachable
// OSD (rados_osd_op_timeout, 15 s by default): the callbacks would then write into this
// queue, poke a freed reactor and copy read data into a freed pool. librbd bounds the wait.
void rbd_queue::wait_for_callbacks() {
    unsigned left = unreturned();
    if (left == 0) return;
    spdlog::warn(
        "{}: queue freed with {} librbd call(s) outstanding ({} command(s)): waiting for librbd to "
        "return them (at most its OSD op timeout)",
        _store.name(), left, _in_flight);
    const auto start = std::chrono::steady_clock::now();
    while (unreturned() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    spdlog::warn(
        "{}: the outstanding librbd calls returned after {} ms", _store.name(),
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count());
}

std::unique_ptr<block_queue> rbd_store::create_queue(unsigned depth, const env::dma_pool*, queue_group*) {
    return std::make_unique<rbd_queue>(*this, depth);
}

void rbd_queue::submit(const sqe& cmd, std::span<const iovec> data, io_completion& done) {
    switch (cmd.opcode) {
        case io_opc::read:
        case io_opc::write:
        case io_opc::flush:
        case io_opc::write_zeroes:
        case io_opc::compare:
        case io_opc::dataset_mgmt:
            break;
        default:
            return done.complete(sc::invalid_opcode | status_dnr);
    }
    rbd_image_t img = _store.image();
    const uint64_t bs = _store.block_size();
    const uint64_t offset = io_slba(cmd) * bs;
    const uint64_t len = uint64_t(io_nlb(cmd)) * bs;
    rbd_op* op = take_slot(done, cmd.opcode);
    if (!op) return done.complete(sc::internal_error);  // cannot happen: depth-sized
    rbd_completion_t c = nullptr;
    int rc = -ENOMEM;
    switch (cmd.opcode) {
        case io_opc::read:
            op->expect = len;
            if ((c = completion(op))) rc = ::rbd_aio_readv(img, data.data(), static_cast<int>(data.size()), offset, c);
            break;
        case io_opc::write:
            op->fua = cmd.cdw12 & (1u << 30);
            if ((c = completion(op))) rc = ::rbd_aio_writev(img, data.data(), static_cast<int>(data.size()), offset, c);
            break;
        case io_opc::flush:
            if ((c = completion(op))) rc = ::rbd_aio_flush(img, c);
            break;
        case io_opc::write_zeroes:
            if ((c = completion(op))) rc = ::rbd_aio_write_zeroes(img, offset, len, c, 0, 0);
            break;
        case io_opc::compare:
            // librbd 16.2 has no vectored compare-and-write: read into the queue's bounce buffer,
            // compare on the reactor, a piece at a time. Rare: one Compare at a time per queue,
            // the others wait their turn.
            op->data = data;
            op->offset = offset;
            op->length = len;
            op->compared = 0;
            if (_compare_owner) {
                op->waiting_next = nullptr;
                (_compare_waiting ? _compare_waiting_last->waiting_next : _compare_waiting) = op;
                _compare_waiting_last = op;
                return;
            }
            _compare_owner = op;
            return read_compare_piece(op);
        case io_opc::dataset_mgmt: {
            rc = 0;
            if (!(cmd.cdw11 & 4)) break;  // hints only
            // One discard per range, each range copied out of the payload as it comes.
            const unsigned nr = (cmd.cdw10 & 0xFF) + 1;
            unsigned idx = 0;
            size_t at = 0;
            dsm_range r{};
            auto* dst = reinterpret_cast<uint8_t*>(&r);
            for (const iovec& v : data) {
                const auto* src = static_cast<const uint8_t*>(v.iov_base);
                for (size_t i = 0; i < v.iov_len && idx < nr; ++i) {
                    dst[at++] = src[i];
                    if (at < sizeof(r)) continue;
                    at = 0;
                    ++idx;
                    if (!r.length) continue;
                    rbd_completion_t dc = completion(op);
                    const int drc = dc ? ::rbd_aio_discard(img, r.slba * bs, uint64_t(r.length) * bs, dc) : -ENOMEM;
                    if (drc < 0) {
                        refused(op, drc, dc);
                        idx = nr;  // send no more
                    }
                }
            }
            break;
        }
    }
    if (rc < 0) refused(op, rc, c);
    release_submitter(op);
}

// The next piece of the Compare owning the bounce buffer; op->pending holds the submitter's
// reference.
void rbd_queue::read_compare_piece(rbd_op* op) {
    op->expect = std::min<uint64_t>(compare_piece_bytes, op->length - op->compared);
    rbd_completion_t c = completion(op);
    const int rc = c ? ::rbd_aio_read(_store.image(), op->offset + op->compared, static_cast<size_t>(op->expect),
                                      reinterpret_cast<char*>(_compare_buffer.get()), c)
                     : -ENOMEM;
    if (rc < 0) refused(op, rc, c);
    release_submitter(op);
}

// Whether the piece just read equals the host's bytes at op->compared.
bool rbd_queue::compare_piece(const rbd_op* op) const {
    uint64_t skip = op->compared, left = op->expect;
    const uint8_t* stored = _compare_buffer.get();
    for (const iovec& v : op->data) {
        if (skip >= v.iov_len) {
            skip -= v.iov_len;
            continue;
        }
        const size_t n = std::min<uint64_t>(v.iov_len - skip, left);
        if (std::memcmp(static_cast<const uint8_t*>(v.iov_base) + skip, stored, n) != 0) return false;
        stored += n;
        left -= n;
        skip = 0;
        if (left == 0) break;
    }
    return true;
}

// On the reactor: completes `op`, or sends the flush of a FUA write (the next piece of a
// Compare) and returns false.
bool rbd_queue::finish(rbd_op* op) {
    const int err = op->error.load(std::memory_order_relaxed);
    uint16_t status = sc::success;
    if (err == -EROFS && _store.lock_managed()) {
        // A write that passed the ANA check before a hand-over and reached librbd after the
        // lock was released: not the data's fault. ANA Transition, without DNR: the host reads
        // the ANA log and retries it through the gateway that owns the image now.
        status = sc::ana_transition;
    } else if (err < 0) {
        status = rbd_error_status(err, op->opcode);
    } else if (op->opcode == io_opc::write && op->fua) {
        op->fua = false;
        op->pending.store(1, std::memory_order_relaxed);
        rbd_completion_t c = completion(op);
        const int rc = c ? ::rbd_aio_flush(_store.image(), c) : -ENOMEM;
        if (rc < 0) refused(op, rc, c);
        release_submitter(op);
        return false;
    } else if (op->opcode == io_opc::compare) {
        if (!compare_piece(op)) {
            status = sc::compare_failure | status_dnr;
        } else if ((op->compared += op->expect) < op->length) {
            op->pending.store(1, std::memory_order_relaxed);
            read_compare_piece(op);
            return false;
        }
    }
    if (op->opcode == io_opc::compare) {
        // The buffer to the next Compare, before this one completes (its completion may submit
        // another, which must not overtake those waiting).
        _compare_owner = _compare_waiting;
        if (_compare_waiting) {
            _compare_waiting = _compare_waiting->waiting_next;
            read_compare_piece(_compare_owner);
        }
    }
    if (err < 0)
        spdlog::debug("{}: opcode {:#x} failed: {} -> status {:#x}", _store.name(), op->opcode, std::strerror(-err),
                      status);
    io_completion* done = op->done;
    op->done = nullptr;
    _free.push_back(op);
    --_in_flight;
    done->complete(status);
    return true;
}

unsigned rbd_queue::poll() {
    // seq_cst: ordered after the reactor's _poked exchange (see reactor::poke()).
    if (_in_flight == 0 || !_done.load()) return 0;
    rbd_op* list = _done.exchange(nullptr, std::memory_order_acquire);
    // Oldest first: the stack holds them newest first.
    rbd_op* ordered = nullptr;
    while (list) {
        rbd_op* next = list->next.load(std::memory_order_relaxed);
        list->next.store(ordered, std::memory_order_relaxed);
        ordered = list;
        list = next;
    }
    unsigned n = 0;
    while (ordered) {
        rbd_op* next = ordered->next.load(std::memory_order_relaxed);
        n += finish(ordered) ? 1 : 0;
        ordered = next;
    }
    return n;
}

}  // namespace

std::unique_ptr<block_store> make_rbd_store(const rbd_options& options) {
    if (options.block_size != 512 && options.block_size != 4096)
        throw std::runtime_error(fmt::format("rbd image {}/{}: block size {} is not 512 or 4096", options.pool,
                                             options.image, options.block_size));
    return std::make_unique<rbd_store>(options);
}

}  // namespace ferry::nvme
