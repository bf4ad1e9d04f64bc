#include "nvme/prp.hh"

namespace ferry::nvme {

bool build_prps(std::span<const dma_segment> segs, uint32_t page_size, std::span<const prp_list_page> lists,
                uint64_t& prp1, uint64_t& prp2) {
    prp1 = prp2 = 0;
    const uint64_t mask = page_size - 1;
    size_t nseg = segs.size();
    while (nseg > 0 && segs[nseg - 1].len == 0) --nseg;  // trailing empty pieces carry nothing
    if (nseg == 0) return true;
    if (segs[0].iova & 3) return false;

    // Pass 1: validate and count the pages after PRP1's.
    uint64_t pages = 0;
    for (size_t i = 0; i < nseg; ++i) {
        const auto& s = segs[i];
        if (s.len == 0) return false;
        if (i > 0 && (s.iova & mask)) return false;
        if (i + 1 < nseg && ((s.iova + s.len) & mask)) return false;
        pages += ((s.iova + s.len - 1) >> __builtin_ctz(page_size)) - (s.iova >> __builtin_ctz(page_size)) + 1;
    }
    prp1 = segs[0].iova;
    const uint64_t rest = pages - 1;
    if (rest == 0) return true;

    // Pass 2: the page addresses after the first, in order.
    auto for_each_page = [&](auto&& emit) {
        bool first = true;
        for (size_t i = 0; i < nseg; ++i) {
            uint64_t p = segs[i].iova & ~mask;
            const uint64_t end = segs[i].iova + segs[i].len;
            for (; p < end; p += page_size) {
                if (!first) emit(p);
                first = false;
            }
        }
    };
    if (rest == 1) {
        for_each_page([&](uint64_t p) { prp2 = p; });
        return true;
    }

    const uint64_t per_page = page_size / sizeof(uint64_t);
    // Full list pages hold per_page - 1 entries plus the chain pointer; the last holds per_page.
    const uint64_t list_pages = rest <= per_page ? 1 : (rest - 1 + (per_page - 1) - 1) / (per_page - 1);
    if (list_pages > lists.size()) return false;
    prp2 = lists[0].iova;
    size_t page = 0, slot = 0;
    uint64_t left = rest;
    for_each_page([&](uint64_t p) {
        if (slot == per_page - 1 && left > 1) {
            lists[page].entries[slot] = lists[page + 1].iova;
            ++page;
            slot = 0;
        }
        lists[page].entries[slot++] = p;
        --left;
    });
    return true;
}

}  // namespace ferry::nvme
