#include "env/dma.hh"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace ferry::env {

namespace {

struct space_state {
    std::mutex lock;
    dma_mapper* mapper = nullptr;
    std::vector<dma_region*> regions;
};

space_state& state() {
    static space_state s;
    return s;
}

}  // namespace

dma_region::dma_region(size_t bytes, std::string what) : _what(std::move(what)) {
    _bytes = (std::max<size_t>(bytes, 1) + hugepage_size - 1) / hugepage_size * hugepage_size;
    void* p = ::mmap(nullptr, _bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE,
                     -1, 0);
    if (p != MAP_FAILED) {
        _hugepages = true;
    } else {
        // No hugepages reserved: ordinary pages still serve the network and RAM/file backends,
        // and devices behind an IOMMU (MAP_DMA pins them).
        p = ::mmap(nullptr, _bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED)
            throw std::runtime_error(_what + ": mmap of " + std::to_string(_bytes) +
                                     " bytes failed: " + std::strerror(errno));
    }
    _base = static_cast<uint8_t*>(p);
    _iova = reinterpret_cast<uint64_t>(_base);
    try {
        dma_space::add(*this);
    } catch (...) {
        ::munmap(_base, _bytes);
        throw;
    }
}

dma_region::~dma_region() {
    dma_space::remove(*this);
    ::munmap(_base, _bytes);
}

void dma_space::add(dma_region& r) {
    auto& s = state();
    std::lock_guard g(s.lock);
    if (s.mapper) r._iova = s.mapper->map(r._base, r._bytes, r._hugepages, r._page_addrs);
    s.regions.push_back(&r);
}

void dma_space::remove(dma_region& r) {
    auto& s = state();
    std::lock_guard g(s.lock);
    if (s.mapper) unmap(*s.mapper, r);
    std::erase(s.regions, &r);
}

void dma_space::set_mapper(dma_mapper* m) {
    auto& s = state();
    std::lock_guard g(s.lock);
    if (s.mapper) {
        for (auto* r : s.regions) unmap(*s.mapper, *r);
        s.mapper = nullptr;
    }
    if (!m) return;
    std::vector<dma_region*> done;
    try {
        for (auto* r : s.regions) {
            r->_iova = m->map(r->_base, r->_bytes, r->_hugepages, r->_page_addrs);
            done.push_back(r);
        }
    } catch (...) {
        for (auto* r : done) unmap(*m, *r);
        throw;
    }
    s.mapper = m;
}

void dma_space::unmap(dma_mapper& m, dma_region& r) {
    m.unmap(r._base, r._bytes, r._iova);
    r._page_addrs.clear();
    r._iova = reinterpret_cast<uint64_t>(r._base);
}

bool dma_space::has_mapper() {
    auto& s = state();
    std::lock_guard g(s.lock);
    return s.mapper != nullptr;
}

}  // namespace ferry::env
