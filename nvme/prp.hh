// PRP construction (NVMe base spec 4.3; reference section 5.5): how a PCIe NVMe command
// describes its data buffer to the controller.
#pragma once

#include <cstdint>
#include <span>

namespace ferry::nvme {

// A piece of the data buffer as the device sees it.
struct dma_segment {
    uint64_t iova;
    uint32_t len;
};

// One page that may hold PRP list entries: page_size bytes, page aligned.
struct prp_list_page {
    uint64_t* entries;  // CPU address
    uint64_t iova;      // device address
};

// Describes `segs` (in order) with PRP1/PRP2, writing PRP lists into `lists` (chained through
// the last entry of a full list page). Returns false if the buffer cannot be expressed with
// PRPs: the first address not dword aligned, a later segment not starting on a page boundary,
// an earlier one not ending on one, or more list pages needed than `lists` has.
bool build_prps(std::span<const dma_segment> segs, uint32_t page_size, std::span<const prp_list_page> lists,
                uint64_t& prp1, uint64_t& prp2);

}  // namespace ferry::nvme
