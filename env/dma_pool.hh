// DMA-capable buffer memory: a fixed pool of equal chunks carved from one dma_region (2 MiB
// hugepages when the system has them reserved, ordinary pages otherwise). Each chunk knows
// its IOVA (see env/dma.hh); chunks are page aligned and never cross a hugepage, so a chunk
// is contiguous for the device.
// A pool belongs to one reactor and is not thread-safe: no locks on the I/O path.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "env/dma.hh"

namespace ferry::env {

class dma_pool {
public:
    static constexpr size_t chunk_size = 8192;

    // Reserves `bytes` (rounded up to whole chunks). Throws std::runtime_error on failure.
    explicit dma_pool(size_t bytes);
    dma_pool(const dma_pool&) = delete;
    dma_pool& operator=(const dma_pool&) = delete;

    // Takes `count` chunks into `out` (iov_len = chunk_size) or none at all; false when too
    // few are free.
    bool get(unsigned count, iovec* out);
    // Returns chunks taken with get(); only iov_base is looked at.
    void put(const iovec* chunks, unsigned count);
    // Device-visible address of a byte inside the pool.
    uint64_t iova(const void* p) const { return _region.iova(p); }
    bool owns(const void* p) const { return _region.contains(p); }

    size_t free_chunks() const { return _free.size(); }
    size_t total_chunks() const { return _total; }
    bool hugepages() const { return _region.hugepages(); }
    const dma_region& region() const { return _region; }
    size_t bytes() const { return _region.bytes(); }

private:
    dma_region _region;
    size_t _total = 0;
    std::vector<uint8_t*> _free;  // LIFO: recently used chunks are warm in cache
};

}  // namespace ferry::env
