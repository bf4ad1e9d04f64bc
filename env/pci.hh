// PCI enumeration of NVMe controllers and handing them between the kernel nvme driver and
// vfio-pci, all through sysfs (nvme-reference.md 6.1). Every function takes the sysfs root as
// a parameter so tests can run against a fake tree; nothing here caches state: sysfs is the
// truth and is re-read on every call.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::env {

// PCI class code of an NVM Express I/O controller: mass storage (01), NVM (08), NVMe (02).
constexpr uint32_t nvme_class_code = 0x010802;

struct pci_device {
    std::string bdf;          // "0000:00:04.0", lower case as in sysfs
    uint32_t class_code = 0;  // 24 bits, e.g. 0x010802
    uint16_t vendor = 0, device = 0;
    std::string driver;                      // "nvme", "vfio-pci", ...; "" if unbound
    int iommu_group = -1;                    // -1 if the device has none (no IOMMU, no vfio no-IOMMU group)
    int numa_node = -1;                      // -1 if unknown / not a NUMA machine
    std::vector<std::string> block_devices;  // "nvme0n1", ... (only while bound to nvme)
};

// "DDDD:BB:DD.F": 4 hex digits of domain, 2 of bus, a device number up to 1f and a function
// 0-7; either case.
bool valid_bdf(std::string_view bdf);

// Every device under sysfs/bus/pci/devices whose class is NVMe, sorted by BDF.
std::vector<pci_device> list_nvme_devices(const std::string& sysfs = "/sys");

// One device (the BDF may be upper case). Throws std::runtime_error naming the BDF if it is not
// a valid BDF or there is no such device.
pci_device read_pci_device(const std::string& bdf, const std::string& sysfs = "/sys");

// The BDFs sharing the device's IOMMU group (the device itself included), sorted; empty when the
// device has no group. vfio only lets a group be used when every member is on vfio-pci or
// unbound (or on a driver that does no DMA, like pcieport or pci-stub).
std::vector<std::string> iommu_group_members(const std::string& bdf, const std::string& sysfs = "/sys");

// Why the device must not be taken from the kernel: one human-readable reason per block device
// (namespace or partition) that is mounted or has holders (device-mapper, LVM, md, ...), e.g.
// "0000:00:04.0: /dev/nvme0n1p1 is mounted on /boot". Empty when it is safe. Throws when the
// mounts file cannot be read: not knowing is not the same as not mounted.
std::vector<std::string> device_in_use_reasons(const pci_device& dev, const std::string& sysfs = "/sys",
                                               const std::string& mounts_file = "/proc/self/mounts");

// Moves an NVMe controller to vfio-pci: driver_override = "vfio-pci", unbind from the current
// driver, drivers_probe, then check_bound_to_vfio(). Already on vfio-pci: nothing is written.
// Throws std::runtime_error, writing nothing, when the device is not NVMe class or (unless
// `force`) is in use, listing every reason.
void bind_to_vfio(const std::string& bdf, bool force, const std::string& sysfs = "/sys",
                  const std::string& mounts_file = "/proc/self/mounts");

// Throws std::runtime_error unless the device's driver link names vfio-pci; the message says
// which driver it has instead and what to do (load vfio-pci, IOMMU / no-IOMMU mode).
void check_bound_to_vfio(const std::string& bdf, const std::string& sysfs = "/sys");

// Gives a device on vfio-pci back to the kernel: clears driver_override, unbinds it from
// vfio-pci and writes drivers_probe so the nvme driver (if loaded) claims it. A device bound to
// any other driver is left alone; an unbound one just gets the override cleared and a probe.
void unbind_from_vfio(const std::string& bdf, const std::string& sysfs = "/sys");

}  // namespace ferry::env
