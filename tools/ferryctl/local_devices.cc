#include "tools/ferryctl/local_devices.hh"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "env/pci.hh"
#include "tools/ferryctl/render.hh"

namespace ferry::ferryctl {

using json = nlohmann::json;

json local_devices(const local_sysfs& where) {
    json out = json::array();
    for (const auto& d : env::list_nvme_devices(where.sysfs))
        out.push_back({{"address", d.bdf},
                       {"vendor", d.vendor},
                       {"device", d.device},
                       {"driver", d.driver},
                       {"iommu_group", d.iommu_group},
                       {"numa_node", d.numa_node},
                       {"block_devices", d.block_devices},
                       {"in_use", env::device_in_use_reasons(d, where.sysfs, where.mounts, where.swaps)},
                       {"iommu_group_conflicts", env::iommu_group_conflicts(d.bdf, {}, where.sysfs)}});
    return out;
}

std::string local_devices_text(const json& devices) {
    std::string text = devices_table(devices);
    for (const auto& d : devices) {
        for (const auto& reason : d.value("in_use", json::array()))
            text += "in use: " + reason.get<std::string>() + "\n";
        for (const auto& c : d.value("iommu_group_conflicts", json::array()))
            text += d.value("address", "") + ": IOMMU group shared with: " + c.get<std::string>() + "\n";
    }
    return text;
}

int local_attach(const std::vector<std::string>& bdfs, bool force, bool dry_run, bool quiet, const local_sysfs& where,
                 std::ostream& out, std::ostream& err) {
    const bool named = !bdfs.empty();
    std::vector<std::string> candidates = bdfs;
    if (!named) {
        for (const auto& d : env::list_nvme_devices(where.sysfs)) candidates.push_back(d.bdf);
        if (candidates.empty()) out << "No NVMe devices found in " << where.sysfs << "/bus/pci/devices.\n";
    }
    const env::vfio_bind_plan plan = env::plan_vfio_bind(candidates, force, where.sysfs, where.mounts, where.swaps);
    if (!quiet) {
        for (const auto& m : plan.messages) out << m << "\n";
        for (const auto& w : plan.warnings) err << "WARNING: " << w << "\n";
    }
    if (named && plan.refused) {
        out << (plan.bind.empty() ? "None of the named devices can be bound (reasons above). Nothing changed.\n"
                                  : "Not all named devices can be bound (reasons above). Nothing changed.\n");
        return 1;
    }
    if (!named && plan.refused && plan.bind.empty())
        out << "No NVMe device is free to bind: each one is in use or otherwise refused (reasons above). Name "
               "devices (and --force for mounted ones) to bind them anyway.\n";
    int status = 0;
    for (const auto& bdf : plan.bind) {
        if (dry_run) {
            out << "would bind " << bdf << "\n";
            continue;
        }
        try {
            const std::string was = env::read_pci_device(bdf, where.sysfs).driver;
            // The plan checked use and IOMMU groups for the whole set (group mates bound together).
            env::bind_to_vfio(bdf, true, where.sysfs, where.mounts, where.swaps);
            out << bdf << ": bound to vfio-pci (was " << (was.empty() ? "unbound" : was) << ")\n";
        } catch (const std::exception& e) {
            err << "error: " << e.what() << "\n";
            status = 1;
        }
    }
    return status;
}

int local_detach(const std::vector<std::string>& bdfs, bool dry_run, const local_sysfs& where, std::ostream& out,
                 std::ostream& err) {
    std::vector<std::string> candidates = bdfs;
    if (bdfs.empty()) {
        for (const auto& d : env::list_nvme_devices(where.sysfs))
            if (d.driver == "vfio-pci") candidates.push_back(d.bdf);
        if (candidates.empty()) out << "No NVMe device is bound to vfio-pci.\n";
    }
    int status = 0;
    std::vector<std::string> back;
    for (const auto& typed : candidates) {
        if (!env::valid_bdf(typed)) {
            out << "refused " << typed << ": not a PCI address (DDDD:BB:DD.F)\n";
            status = 1;
            continue;
        }
        env::pci_device d;
        try {
            d = env::read_pci_device(typed, where.sysfs);
        } catch (const std::exception& e) {
            out << "refused " << typed << ": no such PCI device (" << e.what() << ")\n";
            status = 1;
            continue;
        }
        if (d.class_code != env::nvme_class_code) {
            char cls[16];
            std::snprintf(cls, sizeof cls, "0x%06x", d.class_code);
            out << "refused " << d.bdf << ": not an NVMe controller (class " << cls << ")\n";
            status = 1;
            continue;
        }
        if (d.driver != "vfio-pci") {
            out << d.bdf << ": not on vfio-pci (driver: " << (d.driver.empty() ? "none" : d.driver)
                << "), left alone\n";
            continue;
        }
        // The kernel's vfio-pci unbind waits until no process has the device open: refuse
        // rather than hang.
        const auto users = env::vfio_group_users(d.bdf, where.sysfs);
        if (!users.empty()) {
            std::string list;
            for (const auto& u : users) list += (list.empty() ? "" : " ") + u;
            out << "refused " << d.bdf << ": its vfio group is open by " << list << " (stop that first)\n";
            status = 1;
            continue;
        }
        back.push_back(d.bdf);
    }
    for (const auto& bdf : back) {
        if (dry_run) {
            out << "would detach " << bdf << "\n";
            continue;
        }
        try {
            env::unbind_from_vfio(bdf, where.sysfs);
            std::string driver = env::read_pci_device(bdf, where.sysfs).driver;
            for (int i = 0; i < 50 && driver != "nvme"; ++i) {  // nvme probes asynchronously
                ::usleep(100'000);
                driver = env::read_pci_device(bdf, where.sysfs).driver;
            }
            if (driver != "nvme") {
                err << "error: " << bdf << ": " << where.sysfs << "/bus/pci/devices/" << bdf
                    << "/driver: " << (driver.empty() ? "no driver" : "driver is " + driver)
                    << ", not nvme, after drivers_probe. Is the nvme module loaded (modprobe nvme)? See dmesg.\n";
                status = 1;
                continue;
            }
            out << bdf << ": back on nvme\n";
        } catch (const std::exception& e) {
            err << "error: " << e.what() << "\n";
            status = 1;
        }
    }
    return status;
}

}  // namespace ferry::ferryctl
