#include "env/dma_pool.hh"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ferry::env {

dma_pool::dma_pool(size_t bytes) {
    constexpr size_t huge = 2u << 20;
    _total = (bytes + chunk_size - 1) / chunk_size;
    if (_total == 0) _total = 1;
    _bytes = (_total * chunk_size + huge - 1) / huge * huge;
    void* p = ::mmap(nullptr, _bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE,
                     -1, 0);
    if (p != MAP_FAILED) {
        _hugepages = true;
    } else {
        // No hugepages reserved: ordinary pages still serve the network and RAM/file backends.
        p = ::mmap(nullptr, _bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED)
            throw std::runtime_error("buffer pool of " + std::to_string(_bytes) + " bytes: mmap failed: " +
                                     std::strerror(errno));
    }
    _base = static_cast<uint8_t*>(p);
    _iova_base = reinterpret_cast<uint64_t>(_base);
    _free.reserve(_total);
    for (size_t i = _total; i-- > 0;) _free.push_back(_base + i * chunk_size);
}

dma_pool::~dma_pool() { ::munmap(_base, _bytes); }

bool dma_pool::get(unsigned count, iovec* out) {
    if (_free.size() < count) return false;
    for (unsigned i = 0; i < count; ++i) {
        out[i].iov_base = _free.back();
        out[i].iov_len = chunk_size;
        _free.pop_back();
    }
    return true;
}

void dma_pool::put(const iovec* chunks, unsigned count) {
    for (unsigned i = 0; i < count; ++i) _free.push_back(static_cast<uint8_t*>(chunks[i].iov_base));
}

}  // namespace ferry::env
