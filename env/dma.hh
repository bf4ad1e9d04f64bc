// DMA-capable memory and its device addresses (IOVAs).
//
// Every piece of memory a device may read or write is a dma_region: a page-aligned mapping,
// backed by 2 MiB hugepages when the system has them reserved. Regions are registered in one
// process-wide dma_space. When a VFIO container is opened it becomes the space's mapper and
// every region, existing or later, is mapped into it; each region then knows its IOVA:
//   - with an IOMMU, one contiguous IOVA range per region (chosen by the mapper);
//   - in vfio no-IOMMU mode, the physical address of every 2 MiB hugepage (so the region
//     must be on hugepages: only they never move).
// Without a mapper (RAM, null and file backends) IOVA = virtual address, which nothing reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ferry::env {

inline constexpr size_t hugepage_size = 2u << 20;

// Maps regions for device access. Implemented by the VFIO container.
class dma_mapper {
public:
    virtual ~dma_mapper() = default;
    // Makes [va, va+bytes) device-visible. Returns the IOVA of va (contiguous mapping) or fills
    // `page_addrs` with one device address per hugepage (no-IOMMU mode) and returns 0.
    // Throws std::runtime_error on failure.
    virtual uint64_t map(void* va, size_t bytes, bool hugepages, std::vector<uint64_t>& page_addrs) = 0;
    virtual void unmap(void* va, size_t bytes, uint64_t iova) = 0;
};

class dma_region {
public:
    // Maps `bytes` (rounded up to whole hugepages) of zeroed memory: hugepages when reserved,
    // ordinary pages otherwise. `what` names the region in errors and logs. Throws
    // std::runtime_error (with `what`) when memory cannot be had or mapped for DMA.
    dma_region(size_t bytes, std::string what);
    ~dma_region();
    dma_region(const dma_region&) = delete;
    dma_region& operator=(const dma_region&) = delete;

    uint8_t* data() const { return _base; }
    size_t bytes() const { return _bytes; }
    bool hugepages() const { return _hugepages; }
    const std::string& what() const { return _what; }
    bool contains(const void* p) const {
        auto* b = static_cast<const uint8_t*>(p);
        return b >= _base && b < _base + _bytes;
    }
    // Device address of a byte inside the region. A range that does not cross a hugepage
    // boundary is contiguous for the device too.
    uint64_t iova(const void* p) const {
        size_t off = static_cast<size_t>(static_cast<const uint8_t*>(p) - _base);
        if (_page_addrs.empty()) return _iova + off;
        return _page_addrs[off / hugepage_size] + off % hugepage_size;
    }

private:
    friend class dma_space;
    uint8_t* _base = nullptr;
    size_t _bytes = 0;
    bool _hugepages = false;
    uint64_t _iova = 0;
    std::vector<uint64_t> _page_addrs;
    std::string _what;
};

// The process-wide set of DMA regions. Control path only (a mutex inside): regions are
// created at start-up and at queue creation, never per I/O.
class dma_space {
public:
    // Installs the mapper and maps every registered region into it; nullptr removes it (after
    // unmapping everything). Throws if a region cannot be mapped (the mapper is not installed).
    static void set_mapper(dma_mapper* m);
    static bool has_mapper();

private:
    friend class dma_region;
    static void add(dma_region& r);
    static void remove(dma_region& r);
    // Takes `r` out of `m`: its IOVA is its address again. Every registered region is mapped
    // exactly while a mapper is installed, so no per-region flag is needed.
    static void unmap(dma_mapper& m, dma_region& r);
};

}  // namespace ferry::env
