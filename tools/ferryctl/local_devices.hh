// `ferryctl devices --local`: the machine's NVMe PCI devices straight from sysfs through env/pci
// (the same code ferryd's /api/v1/devices runs), for use before ferryd runs (deploy/setup.sh).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ferry::ferryctl {

struct local_sysfs {
    std::string sysfs = "/sys";
    std::string mounts = "/proc/self/mounts";
};

// The API's device objects plus "in_use": the reasons the device must stay with the kernel.
nlohmann::json local_devices(const local_sysfs& where);
// The device table and, below it, every in-use reason.
std::string local_devices_text(const nlohmann::json& devices);
// Bind to vfio-pci / give back to the kernel; the line to print ("BDF: bound to vfio-pci (was
// nvme)"). Throws std::runtime_error with every reason for a refusal.
std::string local_attach(const std::string& bdf, bool force, const local_sysfs& where);
std::string local_detach(const std::string& bdf, const local_sysfs& where);

}  // namespace ferry::ferryctl
