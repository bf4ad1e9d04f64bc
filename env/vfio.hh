// VFIO: a PCI device handed to this process by the kernel's vfio-pci driver.
//
// One container per process holds every device's IOMMU group, so all devices share one set
// of DMA mappings (every dma_region, see env/dma.hh). Two modes, chosen by what the kernel
// offers for the device's group:
//   - type1 IOMMU (/dev/vfio/N): regions are mapped at IOVAs picked from the IOMMU's valid
//     ranges; a device can reach nothing else.
//   - no-IOMMU (/dev/vfio/noiommu-N, vfio's enable_unsafe_noiommu_mode): no translation; the
//     device is given physical addresses from /proc/self/pagemap. Unsafe (the device can
//     reach all memory), root only, hugepages only. Logged loudly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ferry::env {

class vfio_device {
public:
    // Opens `bdf` ("0000:00:04.0"), which must be bound to vfio-pci, maps BAR0 and enables
    // memory decoding and bus mastering. Throws std::runtime_error saying what is wrong and
    // what to do (not bound, group not viable and which devices spoil it, no permission...).
    explicit vfio_device(const std::string& bdf);
    ~vfio_device();
    vfio_device(const vfio_device&) = delete;
    vfio_device& operator=(const vfio_device&) = delete;

    const std::string& bdf() const { return _bdf; }
    volatile uint8_t* bar0() const { return _bar0; }
    size_t bar0_size() const { return _bar0_size; }
    bool noiommu() const { return _noiommu; }
    // PCI function level reset through VFIO; false if the device does not support it.
    bool reset();

    uint16_t config_read16(uint32_t offset) const;
    void config_write16(uint32_t offset, uint16_t value) const;

private:
    std::string _bdf;
    int _group_fd = -1;
    int _device_fd = -1;
    bool _noiommu = false;
    bool _can_reset = false;
    uint64_t _config_offset = 0;
    volatile uint8_t* _bar0 = nullptr;
    size_t _bar0_size = 0;
};

}  // namespace ferry::env
