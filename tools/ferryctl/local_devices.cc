#include "tools/ferryctl/local_devices.hh"

#include "env/pci.hh"
#include "tools/ferryctl/render.hh"

namespace ferry::ferryctl {

using json = nlohmann::json;

namespace {

json device_json(const env::pci_device& d, const local_sysfs& where) {
    return {{"address", d.bdf},
            {"vendor", d.vendor},
            {"device", d.device},
            {"driver", d.driver},
            {"iommu_group", d.iommu_group},
            {"numa_node", d.numa_node},
            {"block_devices", d.block_devices},
            {"in_use", env::device_in_use_reasons(d, where.sysfs, where.mounts)}};
}

}  // namespace

json local_devices(const local_sysfs& where) {
    json out = json::array();
    for (const auto& d : env::list_nvme_devices(where.sysfs)) out.push_back(device_json(d, where));
    return out;
}

std::string local_devices_text(const json& devices) {
    std::string text = devices_table(devices);
    for (const auto& d : devices)
        for (const auto& reason : d.value("in_use", json::array()))
            text += "in use: " + reason.get<std::string>() + "\n";
    return text;
}

std::string local_attach(const std::string& bdf, bool force, const local_sysfs& where) {
    const env::pci_device before = env::read_pci_device(bdf, where.sysfs);
    if (before.driver == "vfio-pci") return before.bdf + ": already bound to vfio-pci";
    env::bind_to_vfio(before.bdf, force, where.sysfs, where.mounts);
    return before.bdf + ": bound to vfio-pci (was " + (before.driver.empty() ? "unbound" : before.driver) + ")";
}

std::string local_detach(const std::string& bdf, const local_sysfs& where) {
    const env::pci_device before = env::read_pci_device(bdf, where.sysfs);
    if (before.driver != "vfio-pci")
        return before.bdf + ": not on vfio-pci (driver: " + (before.driver.empty() ? "none" : before.driver) +
               "), left alone";
    env::unbind_from_vfio(before.bdf, where.sysfs);
    const env::pci_device after = env::read_pci_device(before.bdf, where.sysfs);
    return before.bdf + ": released from vfio-pci (driver now: " + (after.driver.empty() ? "none" : after.driver) + ")";
}

}  // namespace ferry::ferryctl
