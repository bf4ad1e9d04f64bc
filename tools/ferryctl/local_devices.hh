// `ferryctl devices --local`: the machine's NVMe PCI devices straight from sysfs through env/pci
// (the same code ferryd's /api/v1/devices runs), without ferryd: deploy/setup.sh runs it before
// ferryd starts, so the binding rules exist once (env/pci plan_vfio_bind).
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace ferry::ferryctl {

struct local_sysfs {
    std::string sysfs = "/sys";
    std::string mounts = "/proc/self/mounts";
    std::string swaps = "/proc/swaps";
};

// The API's device objects plus "in_use": the reasons the device must stay with the kernel, and
// "iommu_group_conflicts": group members on other drivers.
nlohmann::json local_devices(const local_sysfs& where);
// The device table and, below it, every in-use reason and group conflict.
std::string local_devices_text(const nlohmann::json& devices);

// Binds `bdfs` (none: every NVMe device, refusals only reported) to vfio-pci after
// plan_vfio_bind: refusals ("refused BDF: why") and progress ("BDF: bound to vfio-pci (was
// nvme)") on `out`, warnings on `err`. A refused named device changes nothing. `dry_run`: only
// the plan, with a "would bind BDF" line per device; `quiet`: not the plan's messages and
// warnings (a caller that showed them from a dry run). Returns the exit status (0, or 1 when a
// named device was refused or a binding failed).
int local_attach(const std::vector<std::string>& bdfs, bool force, bool dry_run, bool quiet, const local_sysfs& where,
                 std::ostream& out, std::ostream& err);
// Gives `bdfs` (none: every NVMe device on vfio-pci) back to the kernel and waits up to 5 s for
// nvme to take each. Refuses an invalid, missing or non-NVMe device and one whose vfio group a
// process has open; leaves a device on another driver alone. `dry_run`: a "would detach BDF" line
// per device instead. Returns 0, or 1 on any refusal or failure.
int local_detach(const std::vector<std::string>& bdfs, bool dry_run, const local_sysfs& where, std::ostream& out,
                 std::ostream& err);

}  // namespace ferry::ferryctl
