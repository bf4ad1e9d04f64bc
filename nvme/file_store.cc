// File and kernel block device store through io_uring: one ring per queue (per reactor), no
// locks; completions are reaped by poll() from the reactor loop.
#include <fcntl.h>
#include <fmt/format.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "nvme/block_queue.hh"

namespace ferry::nvme {
namespace {

// What a write of zeroes writes when the file system or device can neither zero nor punch a
// range: page aligned for O_DIRECT, never written. Not const: in .bss, not 1 MiB of the binary.
alignas(4096) uint8_t zero_source[1 << 20];

// How Write Zeroes and Deallocate zero a range. A file system or device that refuses a
// fallocate mode (EOPNOTSUPP: tmpfs has no ZERO_RANGE, a block device without zeroing offload
// refuses PUNCH_HOLE; EINVAL: a kernel without IORING_OP_FALLOCATE) is not asked again by this
// queue; any other error (EIO, ENOSPC) fails the command and changes nothing.
enum class zero_method : uint8_t {
    zero_range,  // fallocate ZERO_RANGE|KEEP_SIZE (files; block devices: blkdev_issue_zeroout)
    punch_hole,  // fallocate PUNCH_HOLE|KEEP_SIZE (reads zeroes after; block devices: zeroout, no fallback)
    write,       // writes of zero_source, one piece at a time
};
// The order tried: a Write Zeroes keeps the blocks allocated where it can, a deallocate frees
// them where it can; both end with writes, which every file and device takes.
constexpr zero_method write_zeroes_order[] = {zero_method::zero_range, zero_method::punch_hole, zero_method::write};
constexpr zero_method deallocate_order[] = {zero_method::punch_hole, zero_method::zero_range, zero_method::write};

class file_store;

class file_queue final : public block_queue {
public:
    // With `buffers`, the pool is registered with the ring so single-chunk I/O (4 KiB and
    // 8 KiB, the common case) uses fixed buffers: no page pinning per command.
    file_queue(file_store& store, unsigned depth, const env::dma_pool* buffers);
    ~file_queue() override;
    void submit(const sqe& cmd, std::span<const iovec> data, io_completion& done) override;
    unsigned poll() override;
    unsigned in_flight() const override { return _in_flight; }
    void close() override { _closed = true; }
    std::string describe() const override { return _fixed ? "io_uring with the buffer pool registered" : "io_uring"; }

private:
    ::io_uring_sqe* next_sqe() {
        ::io_uring_sqe* s = ::io_uring_get_sqe(&_ring);
        if (!s) {
            ::io_uring_submit(&_ring);
            s = ::io_uring_get_sqe(&_ring);
        }
        return s;
    }
    // A Write Zeroes or Deallocate runs as a chain of io_uring operations, one in flight at a
    // time, each started from poll() when the one before completes: a large range on a device
    // that has to be written never holds the reactor (it was done with pwrite in submit()).
    struct zeroing {
        std::span<const iovec> ranges;  // Deallocate: the command's range list (valid until done)
        uint16_t range_count = 0, next_range = 0;
        uint64_t offset = 0, left = 0;  // the part of the current range not yet zeroed
        zero_method method = zero_method::write;
        bool fua = false;  // Write Zeroes with FUA: a datasync once zeroed
        bool syncing = false;
    };
    struct op {
        io_completion* done;
        uint8_t opcode;
        uint32_t expect;  // bytes a read/write must move
        zeroing z;
    };
    // Queues the chain's next operation, or completes the command (true) when none is left.
    bool zeroing_step(uint32_t slot);
    bool zeroing_completed(uint32_t slot, int res);  // true: the command completed
    bool next_range(zeroing& z);
    zero_method first_method(uint8_t opcode) const;
    bool _closed = false;  // close(): zeroing chains stop at their next step
    file_store& _store;
    const env::dma_pool* _fixed = nullptr;  // registered as fixed buffer 0
    ::io_uring _ring{};
    std::vector<op> _ops;
    std::vector<uint32_t> _free;
    unsigned _in_flight = 0;
    bool _refused[2] = {false, false};  // by the file or device: zero_range, punch_hole
    // Scratch for Compare, page aligned for O_DIRECT, grown on first use.
    std::unique_ptr<uint8_t, decltype(&std::free)> _compare{nullptr, &std::free};
    size_t _compare_size = 0;
};

class file_store final : public block_store {
public:
    file_store(const std::string& path, uint32_t block_size, uint64_t size_bytes) : _path(path), _bs(block_size) {
        int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC | (size_bytes ? O_CREAT : 0), 0644);
        if (fd < 0 && errno == EINVAL) {
            // The file system does not do O_DIRECT (tmpfs, ...): go through the page cache.
            fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (size_bytes ? O_CREAT : 0), 0644);
            _direct = false;
        }
        if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
        _fd = fd;
        struct stat st {};
        ::fstat(fd, &st);
        uint64_t have = 0;
        if (S_ISBLK(st.st_mode)) {
            if (::ioctl(fd, BLKGETSIZE64, &have) != 0) fail("BLKGETSIZE64");
            _block_device = true;
        } else if (S_ISREG(st.st_mode)) {
            have = static_cast<uint64_t>(st.st_size);
        } else {
            fail_text("is neither a regular file nor a block device");
        }
        const uint64_t size = size_bytes ? size_bytes : have;  // may cover only the start of the file
        if (size > have) {
            if (_block_device) fail_text(fmt::format("is {} bytes, {} asked", have, size));
            if (::ftruncate(fd, static_cast<off_t>(size)) != 0) fail("ftruncate");
        }
        if (size < block_size) fail_text("is smaller than one block");
        _blocks = size / block_size;
    }
    ~file_store() override {
        if (_fd >= 0) ::close(_fd);
    }
    uint64_t block_count() const override { return _blocks.load(std::memory_order_acquire); }
    uint32_t block_size() const override { return _bs; }
    void grow(uint64_t blocks) override {
        const uint64_t size = blocks * _bs;
        if (blocks <= _blocks.load()) return;
        struct stat st {};
        if (::fstat(_fd, &st) != 0) throw std::runtime_error(fmt::format("{}: fstat: {}", _path, std::strerror(errno)));
        if (_block_device) {
            uint64_t have = 0;
            if (::ioctl(_fd, BLKGETSIZE64, &have) != 0)
                throw std::runtime_error(fmt::format("{}: BLKGETSIZE64: {}", _path, std::strerror(errno)));
            if (have < size) throw std::runtime_error(fmt::format("{}: is {} bytes, {} asked", _path, have, size));
        } else if (static_cast<uint64_t>(st.st_size) < size && ::ftruncate(_fd, static_cast<off_t>(size)) != 0) {
            throw std::runtime_error(fmt::format("{}: ftruncate to {} bytes: {}", _path, size, std::strerror(errno)));
        }
        _blocks.store(blocks, std::memory_order_release);
    }
    std::string describe() const override {
        return fmt::format("file {} (io_uring{})", _path, _direct ? ", O_DIRECT" : ", page cache");
    }
    std::unique_ptr<block_queue> create_queue(unsigned depth, const env::dma_pool* buffers, queue_group*) override {
        return std::make_unique<file_queue>(*this, depth, buffers);
    }
    int fd() const { return _fd; }
    bool block_device() const { return _block_device; }
    const std::string& path() const { return _path; }

private:
    [[noreturn]] void fail(const char* what) { fail_text(fmt::format("{}: {}", what, std::strerror(errno))); }
    [[noreturn]] void fail_text(const std::string& what) {
        if (_fd >= 0) ::close(_fd);
        _fd = -1;
        throw std::runtime_error(fmt::format("{}: {}", _path, what));
    }
    std::string _path;
    uint32_t _bs;
    int _fd = -1;
    bool _direct = true;
    bool _block_device = false;
    std::atomic<uint64_t> _blocks{0};
};

file_queue::file_queue(file_store& store, unsigned depth, const env::dma_pool* buffers) : _store(store) {
    unsigned entries = 8;
    while (entries < depth * 2 && entries < 4096) entries *= 2;
    int rc = ::io_uring_queue_init(entries, &_ring, 0);
    if (rc < 0) throw std::runtime_error(fmt::format("io_uring_queue_init: {}", std::strerror(-rc)));
    if (buffers) {
        iovec whole{buffers->region().data(), buffers->region().bytes()};
        rc = ::io_uring_register_buffers(&_ring, &whole, 1);
        if (rc == 0)
            _fixed = buffers;
        else  // e.g. RLIMIT_MEMLOCK too small: plain readv/writev still work
            spdlog::debug("file {}: io_uring_register_buffers: {}; using unregistered buffers", _store.path(),
                          std::strerror(-rc));
    }
    _ops.resize(entries);
    for (uint32_t i = entries; i-- > 0;) _free.push_back(i);
}

file_queue::~file_queue() {
    // The owner waits for in_flight() == 0 before destroying a queue.
    ::io_uring_queue_exit(&_ring);
}

void file_queue::submit(const sqe& cmd, std::span<const iovec> data, io_completion& done) {
    const int fd = _store.fd();
    const uint64_t offset = io_slba(cmd) * _store.block_size();
    uint32_t bytes = 0;
    for (const iovec& v : data) bytes += static_cast<uint32_t>(v.iov_len);

    switch (cmd.opcode) {
        case io_opc::read:
        case io_opc::write:
        case io_opc::flush:
            break;
        case io_opc::compare: {
            // Rare: read synchronously into scratch and compare.
            if (_compare_size < bytes) {
                const size_t size = (bytes + 4095) & ~size_t(4095);
                _compare.reset(static_cast<uint8_t*>(std::aligned_alloc(4096, size)));
                _compare_size = _compare ? size : 0;
                if (!_compare) return done.complete(sc::internal_error);
            }
            ssize_t r = ::pread(fd, _compare.get(), bytes, static_cast<off_t>(offset));
            if (r != static_cast<ssize_t>(bytes)) return done.complete(sc::unrecovered_read_error);
            size_t at = 0;
            for (const iovec& v : data) {
                if (std::memcmp(_compare.get() + at, v.iov_base, v.iov_len) != 0)
                    return done.complete(sc::compare_failure | status_dnr);
                at += v.iov_len;
            }
            return done.complete(sc::success);
        }
        case io_opc::write_zeroes:
        case io_opc::dataset_mgmt: {
            if (cmd.opcode == io_opc::dataset_mgmt && !(cmd.cdw11 & 4)) return done.complete(sc::success);  // hints
            if (_free.empty()) return done.complete(sc::internal_error);  // cannot happen: depth-sized ring
            const uint32_t slot = _free.back();
            _free.pop_back();
            _ops[slot] = {&done, cmd.opcode, 0, {}};
            zeroing& z = _ops[slot].z;
            if (cmd.opcode == io_opc::write_zeroes) {
                z.offset = offset;
                z.left = uint64_t(io_nlb(cmd)) * _store.block_size();
                z.method = first_method(cmd.opcode);
                z.fua = cmd.cdw12 & (1u << 30);
            } else {
                // Deallocated blocks read as zeroes (DLFEAT): punch holes, or write zeroes.
                z.ranges = data;
                z.range_count = static_cast<uint16_t>((cmd.cdw10 & 0xFF) + 1);
            }
            ++_in_flight;
            zeroing_step(slot);  // queued; submitted by the next poll() with the rest of this pass
            return;
        }
        default:
            return done.complete(sc::invalid_opcode | status_dnr);
    }

    if (_free.empty()) return done.complete(sc::internal_error);  // cannot happen: depth-sized ring
    const uint32_t slot = _free.back();
    _free.pop_back();
    _ops[slot] = {&done, cmd.opcode, bytes, {}};
    ::io_uring_sqe* s = next_sqe();
    const bool fixed = _fixed && data.size() == 1 && _fixed->owns(data[0].iov_base);
    if (cmd.opcode == io_opc::read) {
        if (fixed)
            ::io_uring_prep_read_fixed(s, fd, data[0].iov_base, static_cast<unsigned>(data[0].iov_len), offset, 0);
        else
            ::io_uring_prep_readv(s, fd, data.data(), static_cast<unsigned>(data.size()), offset);
    } else if (cmd.opcode == io_opc::write) {
        if (fixed)
            ::io_uring_prep_write_fixed(s, fd, data[0].iov_base, static_cast<unsigned>(data[0].iov_len), offset, 0);
        else
            ::io_uring_prep_writev(s, fd, data.data(), static_cast<unsigned>(data.size()), offset);
        if (cmd.cdw12 & (1u << 30)) s->rw_flags = RWF_DSYNC;  // FUA
    } else {
        ::io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC);
        _ops[slot].expect = 0;
    }
    ::io_uring_sqe_set_data64(s, slot);
    ++_in_flight;  // submitted by the next poll(), with whatever else this reactor pass queued
}

bool file_queue::next_range(zeroing& z) {
    while (z.left == 0 && z.next_range < z.range_count) {
        const dsm_range r = dsm_range_at(z.ranges, z.next_range++);
        z.offset = r.slba * _store.block_size();
        z.left = uint64_t(r.length) * _store.block_size();
        z.method = first_method(io_opc::dataset_mgmt);
    }
    return z.left != 0;
}

const char* zeroing_name(uint8_t opcode) {
    return opcode == io_opc::write_zeroes ? "Write Zeroes" : "Deallocate";
}

zero_method file_queue::first_method(uint8_t opcode) const {
    for (zero_method m : opcode == io_opc::write_zeroes ? write_zeroes_order : deallocate_order)
        if (m == zero_method::write || !_refused[static_cast<int>(m)]) return m;
    return zero_method::write;
}

bool file_queue::zeroing_step(uint32_t slot) {
    op& o = _ops[slot];
    zeroing& z = o.z;
    if (_closed) {
        // The connection is gone (or the namespace): no answer will be sent, and the rest of a
        // large range is not worth the time the queue's teardown would wait for it.
        _free.push_back(slot);
        --_in_flight;
        o.done->complete(sc::aborted_sq_deletion);
        return true;
    }
    if (z.left == 0 && !next_range(z)) {
        if (z.fua && !z.syncing) {
            z.syncing = true;
            ::io_uring_sqe* s = next_sqe();
            ::io_uring_prep_fsync(s, _store.fd(), IORING_FSYNC_DATASYNC);
            ::io_uring_sqe_set_data64(s, slot);
            return false;
        }
        _free.push_back(slot);
        --_in_flight;
        o.done->complete(sc::success);
        return true;
    }
    ::io_uring_sqe* s = next_sqe();
    switch (z.method) {
        case zero_method::zero_range:
        case zero_method::punch_hole:
            ::io_uring_prep_fallocate(
                s, _store.fd(),
                (z.method == zero_method::zero_range ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE) |
                    FALLOC_FL_KEEP_SIZE,
                z.offset, z.left);
            break;
        case zero_method::write:
            ::io_uring_prep_write(s, _store.fd(), zero_source,
                                  static_cast<unsigned>(std::min<uint64_t>(z.left, sizeof(zero_source))), z.offset);
            break;
    }
    ::io_uring_sqe_set_data64(s, slot);
    return false;
}

bool file_queue::zeroing_completed(uint32_t slot, int res) {
    op& o = _ops[slot];
    zeroing& z = o.z;
    if (z.syncing) {
        if (res < 0) res = -EIO;  // a failed datasync is a failed write
    } else if (res >= 0) {
        const uint64_t moved = z.method == zero_method::write ? static_cast<uint64_t>(res) : z.left;
        if (moved == 0) res = -EIO;  // a write that moves nothing would never end
        z.offset += moved;
        z.left -= std::min(moved, z.left);
    } else if (z.method != zero_method::write && (res == -EOPNOTSUPP || res == -EINVAL)) {
        // This file system or device cannot: the next method, for this range and from now on.
        const zero_method refused = z.method;
        _refused[static_cast<int>(refused)] = true;
        z.method = first_method(o.opcode);
        spdlog::debug("file {}: fallocate {} refused ({}); {} goes on with the next method", _store.path(),
                      refused == zero_method::zero_range ? "ZERO_RANGE" : "PUNCH_HOLE", std::strerror(-res),
                      zeroing_name(o.opcode));
        res = 0;
    }
    if (res < 0) {
        spdlog::warn("file {}: {} failed: {}", _store.path(), zeroing_name(o.opcode), std::strerror(-res));
        _free.push_back(slot);
        --_in_flight;
        o.done->complete(o.opcode == io_opc::write_zeroes ? sc::write_fault : sc::internal_error);
        return true;
    }
    return zeroing_step(slot);
}

unsigned file_queue::poll() {
    if (_in_flight == 0) return 0;
    if (::io_uring_sq_ready(&_ring)) ::io_uring_submit(&_ring);
    unsigned head, n = 0;
    ::io_uring_cqe* c;
    io_uring_for_each_cqe(&_ring, head, c) {
        ++n;
        const uint32_t slot = static_cast<uint32_t>(::io_uring_cqe_get_data64(c));
        if (_ops[slot].opcode == io_opc::write_zeroes || _ops[slot].opcode == io_opc::dataset_mgmt) {
            zeroing_completed(slot, c->res);
            continue;
        }
        op o = _ops[slot];
        _free.push_back(slot);
        --_in_flight;
        uint16_t status = sc::success;
        if (c->res < 0 || static_cast<uint32_t>(c->res) != o.expect) {
            // Media errors as the NVMe host expects them: unrecovered read, write fault.
            status = o.opcode == io_opc::read    ? sc::unrecovered_read_error
                     : o.opcode == io_opc::write ? sc::write_fault
                                                 : sc::internal_error;
        }
        o.done->complete(status);
    }
    ::io_uring_cq_advance(&_ring, n);
    if (::io_uring_sq_ready(&_ring)) ::io_uring_submit(&_ring);  // the next steps of zeroing chains
    return n;
}

}  // namespace

std::unique_ptr<block_store> make_file_store(const std::string& path, uint32_t block_size, uint64_t size_bytes) {
    return std::make_unique<file_store>(path, block_size, size_bytes);
}

}  // namespace ferry::nvme
