#include "env/dma_pool.hh"

namespace ferry::env {

namespace {
size_t chunks_for(size_t bytes) { return bytes ? (bytes + dma_pool::chunk_size - 1) / dma_pool::chunk_size : 1; }
}  // namespace

dma_pool::dma_pool(size_t bytes)
    : _region(chunks_for(bytes) * chunk_size, "buffer pool"), _total(chunks_for(bytes)) {
    _free.reserve(_total);
    for (size_t i = _total; i-- > 0;) _free.push_back(_region.data() + i * chunk_size);
}

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
