// RAM and null block stores (software queues that complete synchronously).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

#include "nvme/block_queue.hh"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace ferry::nvme {
namespace {

// Queues on different reactors read and write the same RAM. What orders a write and a later
// read of the same blocks is the host: it sees the write's completion (sent over the network)
// before it sends the read, a happens-before that ThreadSanitizer cannot see through the
// kernel's sockets. Under TSan each command therefore acquires the store before it touches the
// blocks and releases it after, which says exactly that. (Commands the host did not order have
// no defined result in NVMe, as on an SSD.) Nothing is done in other builds.
struct host_ordered_access {
    explicit host_ordered_access([[maybe_unused]] void* store) : _store(store) {
#if defined(__SANITIZE_THREAD__)
        __tsan_acquire(_store);
#endif
    }
    ~host_ordered_access() {
#if defined(__SANITIZE_THREAD__)
        __tsan_release(_store);
#endif
    }
    host_ordered_access(const host_ordered_access&) = delete;
    host_ordered_access& operator=(const host_ordered_access&) = delete;

private:
    [[maybe_unused]] void* _store;
};

// Copies between a contiguous region and an iovec list, in the given direction.
void copy_iov(uint8_t* region, std::span<const iovec> iov, bool to_region) {
    for (const iovec& v : iov) {
        if (to_region)
            std::memcpy(region, v.iov_base, v.iov_len);
        else
            std::memcpy(v.iov_base, region, v.iov_len);
        region += v.iov_len;
    }
}

class ram_store;

class ram_queue final : public block_queue {
public:
    explicit ram_queue(ram_store& store) : _store(store) {}
    void submit(const sqe& cmd, std::span<const iovec> data, io_completion& done) override;

private:
    uint16_t execute(const sqe& cmd, std::span<const iovec> data);  // the command's status
    ram_store& _store;
};

// The mapping reserves address space for growth (resize_namespace) up front, so a grown store
// keeps its base address while queues on other reactors use it; pages beyond the current size
// stay PROT_NONE. Nothing of it costs memory until written (MAP_NORESERVE).
class ram_store final : public block_store {
public:
    ram_store(uint64_t blocks, uint32_t block_size, uint32_t max_transfer)
        : _blocks(blocks), _block_size(block_size), _max_transfer(max_transfer) {
        _bytes = blocks * block_size;
        // Room to grow: 4x, at least 4 GiB, at most 1 TiB beyond the size asked.
        _reserved =
            page_up(std::min<uint64_t>(std::max<uint64_t>(_bytes * 4, _bytes + (4ull << 30)), _bytes + (1ull << 40)));
        void* p = ::mmap(nullptr, _reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            _reserved = page_up(_bytes);  // no address space to spare: no growth beyond the size
            p = ::mmap(nullptr, _reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        }
        if (p == MAP_FAILED)
            throw std::runtime_error("RAM namespace of " + std::to_string(_bytes) +
                                     " bytes: mmap failed: " + std::strerror(errno));
        _base = static_cast<uint8_t*>(p);
        if (::mprotect(_base, page_up(_bytes), PROT_READ | PROT_WRITE) != 0) {
            const std::string err = std::strerror(errno);
            ::munmap(_base, _reserved);
            throw std::runtime_error("RAM namespace of " + std::to_string(_bytes) + " bytes: mprotect failed: " + err);
        }
    }
    ~ram_store() override { ::munmap(_base, _reserved); }

    uint64_t block_count() const override { return _blocks.load(std::memory_order_acquire); }
    uint32_t block_size() const override { return _block_size; }
    std::string describe() const override { return "ram"; }
    uint32_t max_transfer_bytes() const override { return _max_transfer; }
    std::unique_ptr<block_queue> create_queue(unsigned, const env::dma_pool*, queue_group*) override {
        return std::make_unique<ram_queue>(*this);
    }
    void grow(uint64_t blocks) override {
        const uint64_t bytes = blocks * _block_size;
        if (bytes <= _bytes) return;
        if (page_up(bytes) > _reserved)
            throw std::runtime_error("RAM namespace of " + std::to_string(_bytes) + " bytes can grow to " +
                                     std::to_string(_reserved) + " bytes at most (address space reserved at creation)");
        // New pages read as zeroes; queues do not reach them before the new size is published.
        const uint64_t from = page_up(_bytes);
        if (page_up(bytes) > from && ::mprotect(_base + from, page_up(bytes) - from, PROT_READ | PROT_WRITE) != 0)
            throw std::runtime_error(std::string("RAM namespace: mprotect failed: ") + std::strerror(errno));
        _bytes = bytes;
        _blocks.store(blocks, std::memory_order_release);
    }

    uint8_t* at(uint64_t lba) { return _base + lba * _block_size; }

    // Zeroes a block range; whole pages inside it go back to the kernel (read as zero).
    void zero(uint64_t slba, uint64_t nlb) {
        uint8_t* begin = at(slba);
        uint8_t* end = begin + nlb * _block_size;
        const uintptr_t page = 4096;
        auto* page_begin = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(begin) + page - 1) & ~(page - 1));
        auto* page_end = reinterpret_cast<uint8_t*>(reinterpret_cast<uintptr_t>(end) & ~(page - 1));
        if (page_begin < page_end) {
            std::memset(begin, 0, page_begin - begin);
            ::madvise(page_begin, page_end - page_begin, MADV_DONTNEED);
            std::memset(page_end, 0, end - page_end);
        } else {
            std::memset(begin, 0, end - begin);
        }
    }

private:
    static uint64_t page_up(uint64_t n) { return (n + 4095) & ~uint64_t(4095); }
    std::atomic<uint64_t> _blocks;
    uint32_t _block_size;
    uint32_t _max_transfer;  // 0 = none; refused above it, as a device refuses beyond its MDTS
    uint64_t _bytes = 0;     // control path only (grow)
    uint64_t _reserved = 0;
    uint8_t* _base = nullptr;
};

void ram_queue::submit(const sqe& cmd, std::span<const iovec> data, io_completion& done) {
    const uint16_t status = execute(cmd, data);
    done.complete(status);
}

uint16_t ram_queue::execute(const sqe& cmd, std::span<const iovec> data) {
    uint16_t status = sc::success;
    if (const uint32_t limit = _store.max_transfer_bytes(); limit && !data.empty()) {
        uint64_t bytes = 0;
        for (const iovec& v : data) bytes += v.iov_len;
        if (bytes > limit) return sc::invalid_field | status_dnr;
    }
    const host_ordered_access ordered(&_store);
    switch (cmd.opcode) {
        case io_opc::read:
            copy_iov(_store.at(io_slba(cmd)), data, false);
            break;
        case io_opc::write:
            copy_iov(_store.at(io_slba(cmd)), data, true);
            break;
        case io_opc::compare: {
            const uint8_t* region = _store.at(io_slba(cmd));
            for (const iovec& v : data) {
                if (std::memcmp(region, v.iov_base, v.iov_len) != 0) {
                    status = sc::compare_failure | status_dnr;
                    break;
                }
                region += v.iov_len;
            }
            break;
        }
        case io_opc::write_zeroes:
            _store.zero(io_slba(cmd), io_nlb(cmd));
            break;
        case io_opc::dataset_mgmt: {
            // Ranges were bounds-checked by the caller; only deallocate (AD) changes data.
            if (cmd.cdw11 & 4) {
                const unsigned nr = (cmd.cdw10 & 0xFF) + 1;
                for (unsigned i = 0; i < nr; ++i)
                    if (const dsm_range r = dsm_range_at(data, i); r.length) _store.zero(r.slba, r.length);
            }
            break;
        }
        case io_opc::flush:
            break;  // RAM is as durable as it gets
        default:
            status = sc::invalid_opcode | status_dnr;
    }
    return status;
}

// Touches no data: its store says reads_zeroes(), so the caller sends zeroes for a Read, and
// a Compare matches only zeroes.
class null_queue final : public block_queue {
public:
    void submit(const sqe& cmd, std::span<const iovec> data, io_completion& done) override {
        if (cmd.opcode == io_opc::compare)
            for (const iovec& v : data) {
                const auto* p = static_cast<const uint8_t*>(v.iov_base);
                if (std::any_of(p, p + v.iov_len, [](uint8_t b) { return b != 0; }))
                    return done.complete(sc::compare_failure | status_dnr);
            }
        done.complete(sc::success);
    }
};

class null_store final : public block_store {
public:
    null_store(uint64_t blocks, uint32_t block_size) : _blocks(blocks), _block_size(block_size) {}
    uint64_t block_count() const override { return _blocks; }
    uint32_t block_size() const override { return _block_size; }
    std::string describe() const override { return "null"; }
    bool reads_zeroes() const override { return true; }
    std::unique_ptr<block_queue> create_queue(unsigned, const env::dma_pool*, queue_group*) override {
        return std::make_unique<null_queue>();
    }

private:
    uint64_t _blocks;
    uint32_t _block_size;
};

}  // namespace

std::unique_ptr<block_store> make_ram_store(uint64_t block_count, uint32_t block_size, uint32_t max_transfer_bytes) {
    return std::make_unique<ram_store>(block_count, block_size, max_transfer_bytes);
}
std::unique_ptr<block_store> make_null_store(uint64_t block_count, uint32_t block_size) {
    return std::make_unique<null_store>(block_count, block_size);
}

}  // namespace ferry::nvme
