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
// Also "... is an active swap area" for a namespace or partition listed in `swaps_file` (a missing
// swaps file means no swap).
std::vector<std::string> device_in_use_reasons(const pci_device& dev, const std::string& sysfs = "/sys",
                                               const std::string& mounts_file = "/proc/self/mounts",
                                               const std::string& swaps_file = "/proc/swaps");

// Members of the device's IOMMU group, other than the device and those in `binding_too`, bound to
// a driver that stops vfio from using the group (anything but vfio drivers, pci-stub, pcieport or
// none), as "0000:00:05.0 (e1000e)". Empty when the group is usable (or there is none).
std::vector<std::string> iommu_group_conflicts(const std::string& bdf, const std::vector<std::string>& binding_too,
                                               const std::string& sysfs = "/sys");

// "comm[pid]" of each process holding the device's /dev/vfio/GROUP (or noiommu-GROUP) open: the
// kernel's vfio-pci unbind would wait for them. Only for the real /sys (a fake tree's group
// numbers mean nothing in /proc): empty for any other sysfs root.
std::vector<std::string> vfio_group_users(const std::string& bdf, const std::string& sysfs = "/sys");

// Which of `candidates` (BDFs as typed; `named`: the operator named them, otherwise every NVMe
// device) may move to vfio-pci, with the rules deploy/setup.sh and ferryctl apply: a valid BDF
// that exists, NVMe class, not already on vfio-pci, not in use (unless `force`: then a warning),
// and an IOMMU group with no member on another driver (devices bound in the same plan are fine
// group mates; dropping one can spoil another's group, so this repeats until stable).
struct vfio_bind_plan {
    std::vector<std::string> bind;      // lower-case BDFs, each once, in the given order
    std::vector<std::string> messages;  // "refused BDF: why", "BDF: already bound to vfio-pci", ...
    std::vector<std::string> warnings;  // forced bindings of devices in use
    bool refused = false;               // some candidate was refused
};
vfio_bind_plan plan_vfio_bind(const std::vector<std::string>& candidates, bool force, const std::string& sysfs = "/sys",
                              const std::string& mounts_file = "/proc/self/mounts",
                              const std::string& swaps_file = "/proc/swaps");

// Moves an NVMe controller to vfio-pci: driver_override = "vfio-pci", unbind from the current
// driver, drivers_probe, then check_bound_to_vfio(). Already on vfio-pci: nothing is written.
// Throws std::runtime_error, writing nothing, when the device is not NVMe class or (unless
// `force`) is in use or its IOMMU group has a member on another driver, listing every reason.
// `force` also suits a caller that checked a whole set with plan_vfio_bind (group mates).
void bind_to_vfio(const std::string& bdf, bool force, const std::string& sysfs = "/sys",
                  const std::string& mounts_file = "/proc/self/mounts", const std::string& swaps_file = "/proc/swaps");

// Throws std::runtime_error unless the device's driver link names vfio-pci (waiting up to 2 s
// for it: a probe may finish after the write returns); the message says which driver it has
// instead and what to do (load vfio-pci, IOMMU / no-IOMMU mode).
void check_bound_to_vfio(const std::string& bdf, const std::string& sysfs = "/sys");

// Gives a device on vfio-pci back to the kernel: clears driver_override, unbinds it from
// vfio-pci and writes drivers_probe so the nvme driver (if loaded) claims it. A device bound to
// any other driver is left alone; an unbound one just gets the override cleared and a probe.
void unbind_from_vfio(const std::string& bdf, const std::string& sysfs = "/sys");

}  // namespace ferry::env
