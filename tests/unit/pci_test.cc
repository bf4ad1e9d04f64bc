// PCI enumeration and vfio-pci binding against a fake sysfs tree in a temp dir. The tree has the
// real layout (devices under devices/pci0000:00, bus/pci/devices symlinks, relative driver and
// iommu_group links), but its attribute files are plain files: a write is only recorded, no
// kernel reacts to it. Where a test needs the kernel's reaction it changes the links itself.
#include "env/pci.hh"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

using namespace ferry::env;
namespace fs = std::filesystem;

namespace {
struct fake_sysfs {
    std::string root;

    fake_sysfs() {
        char tmpl[] = "/var/tmp/ferry-pci-XXXXXX";
        root = ::mkdtemp(tmpl);
        fs::create_directories(root + "/bus/pci/devices");
        fs::create_directories(root + "/devices/pci0000:00");
        fs::create_directories(root + "/block");
        for (const char* drv : {"nvme", "vfio-pci", "e1000e"}) {
            fs::create_directories(root + "/bus/pci/drivers/" + drv);
            write(std::string("bus/pci/drivers/") + drv + "/unbind", "");
        }
        write("bus/pci/drivers_probe", "");
        write("mounts", "");
    }
    ~fake_sysfs() { fs::remove_all(root); }

    std::string path(const std::string& rel) const { return root + "/" + rel; }
    std::string mounts() const { return path("mounts"); }
    std::string dev(const std::string& bdf) const { return "devices/pci0000:00/" + bdf; }

    void write(const std::string& rel, const std::string& text) const { std::ofstream(path(rel)) << text; }
    std::string read(const std::string& rel) const {
        std::ifstream in(path(rel));
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }

    // A device as the kernel shows it; driver "" = unbound, group -1 = no IOMMU group.
    void add_device(const std::string& bdf, const char* cls, const std::string& driver, int group = -1,
                    int node = 0) const {
        const std::string d = dev(bdf);
        fs::create_directories(path(d));
        fs::create_directory_symlink("../../../devices/pci0000:00/" + bdf, path("bus/pci/devices/" + bdf));
        write(d + "/class", std::string(cls) + "\n");
        write(d + "/vendor", "0x1b36\n");
        write(d + "/device", "0x0010\n");
        write(d + "/numa_node", std::to_string(node) + "\n");
        write(d + "/driver_override", "(null)\n");
        if (!driver.empty()) set_driver(bdf, driver);
        if (group >= 0) {
            const std::string g = "kernel/iommu_groups/" + std::to_string(group);
            fs::create_directories(path(g + "/devices"));
            fs::create_directory_symlink("../../../" + g, path(d + "/iommu_group"));
            fs::create_directory_symlink("../../../../devices/pci0000:00/" + bdf, path(g + "/devices/" + bdf));
        }
    }
    // What the kernel does when a driver claims the device.
    void set_driver(const std::string& bdf, const std::string& driver) const {
        fs::remove(path(dev(bdf) + "/driver"));
        fs::create_directory_symlink("../../../bus/pci/drivers/" + driver, path(dev(bdf) + "/driver"));
    }
    // Namespace `ns_dir` of controller `ctrl` (e.g. nvme0c0n1 with multipath) whose block device
    // is `disk`, with partitions.
    void add_namespace(const std::string& bdf, const std::string& ctrl, const std::string& ns_dir,
                       const std::string& disk, std::vector<std::string> partitions = {}) const {
        fs::create_directories(path(dev(bdf) + "/nvme/" + ctrl + "/" + ns_dir));
        fs::create_directories(path("block/" + disk + "/holders"));
        fs::create_directories(path("block/" + disk + "/queue"));
        for (const auto& p : partitions) fs::create_directories(path("block/" + disk + "/" + p + "/holders"));
    }
};

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "(no exception)";
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}
}  // namespace

TEST(Pci, lists_only_nvme_devices_sorted_by_bdf) {
    fake_sysfs t;
    t.add_device("0000:00:05.0", "0x010802", "nvme", 12, 1);
    t.add_device("0000:00:04.0", "0x020000", "e1000e", 11);  // a NIC
    t.add_device("0000:00:03.0", "0x010802", "");            // NVMe, unbound, no IOMMU group
    t.add_device("0000:00:02.0", "0x010601", "");            // AHCI: storage but not NVMe
    t.add_namespace("0000:00:05.0", "nvme0", "nvme0n1", "nvme0n1");
    t.add_namespace("0000:00:05.0", "nvme0", "nvme0n2", "nvme0n2");
    auto list = list_nvme_devices(t.root);
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0].bdf, "0000:00:03.0");
    EXPECT_EQ(list[0].driver, "");
    EXPECT_EQ(list[0].iommu_group, -1);
    EXPECT_TRUE(list[0].block_devices.empty());
    EXPECT_EQ(list[1].bdf, "0000:00:05.0");
    EXPECT_EQ(list[1].class_code, 0x010802u);
    EXPECT_EQ(list[1].vendor, 0x1b36);
    EXPECT_EQ(list[1].device, 0x0010);
    EXPECT_EQ(list[1].driver, "nvme");
    EXPECT_EQ(list[1].iommu_group, 12);
    EXPECT_EQ(list[1].numa_node, 1);
    EXPECT_EQ(list[1].block_devices, (std::vector<std::string>{"nvme0n1", "nvme0n2"}));
}

TEST(Pci, multipath_namespace_maps_to_its_block_device) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "nvme");
    t.add_namespace("0000:00:04.0", "nvme1", "nvme0c1n1", "nvme0n1");
    EXPECT_EQ(read_pci_device("0000:00:04.0", t.root).block_devices, std::vector<std::string>{"nvme0n1"});
}

TEST(Pci, valid_bdf) {
    for (const char* ok : {"0000:00:04.0", "0000:0a:1f.7", "ABCD:EF:1F.0", "ffff:ff:00.1"})
        EXPECT_TRUE(valid_bdf(ok)) << ok;
    for (const char* bad : {"", "00:04.0", "0000:00:04", "0000:00:04.", "0000:00:20.0", "0000:00:04.8", "0000-00:04.0",
                            "000g:00:04.0", "0000:00:04.00", " 0000:00:04.0", "0000:00.04:0"})
        EXPECT_FALSE(valid_bdf(bad)) << bad;
}

TEST(Pci, read_device_normalises_case_and_names_missing_devices) {
    fake_sysfs t;
    t.add_device("0000:0a:00.0", "0x010802", "nvme", 3);
    EXPECT_EQ(read_pci_device("0000:0A:00.0", t.root).bdf, "0000:0a:00.0");
    EXPECT_EQ(
        error_of([&] { read_pci_device("0000:00:09.0", t.root); }),
        "0000:00:09.0: " + t.root + "/bus/pci/devices/0000:00:09.0: no such PCI device: No such file or directory");
    EXPECT_TRUE(contains(error_of([&] { read_pci_device("00:09.0", t.root); }), "'00:09.0' is not a PCI address"));
}

TEST(Pci, iommu_group_members) {
    fake_sysfs t;
    t.add_device("0000:00:05.0", "0x010802", "nvme", 7);
    t.add_device("0000:00:04.0", "0x020000", "e1000e", 7);
    t.add_device("0000:00:03.0", "0x010802", "", -1);
    EXPECT_EQ(iommu_group_members("0000:00:05.0", t.root), (std::vector<std::string>{"0000:00:04.0", "0000:00:05.0"}));
    EXPECT_TRUE(iommu_group_members("0000:00:03.0", t.root).empty());
}

TEST(Pci, in_use_by_a_mounted_partition_or_a_holder) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "nvme");
    t.add_namespace("0000:00:04.0", "nvme0", "nvme0n1", "nvme0n1", {"nvme0n1p1", "nvme0n1p2"});
    t.add_device("0000:00:05.0", "0x010802", "nvme");
    t.add_namespace("0000:00:05.0", "nvme1", "nvme1n1", "nvme1n1");
    t.add_device("0000:00:06.0", "0x010802", "nvme");
    t.add_namespace("0000:00:06.0", "nvme2", "nvme2n1", "nvme2n1");
    // nvme0n10 and a tmpfs mentioning the name elsewhere must not count for nvme0n1 / nvme2n1.
    t.write("mounts",
            "/dev/sda1 / ext4 rw 0 0\n"
            "/dev/nvme0n1p1 /boot ext4 rw,relatime 0 0\n"
            "/dev/nvme0n1p1 /mnt/my\\040disk ext4 rw 0 0\n"
            "/dev/nvme0n10 /srv xfs rw 0 0\n"
            "tmpfs /dev/nvme2n1 tmpfs rw 0 0\n");
    fs::create_directories(t.path("block/nvme1n1/holders/dm-0"));

    EXPECT_EQ(device_in_use_reasons(read_pci_device("0000:00:04.0", t.root), t.root, t.mounts()),
              std::vector<std::string>{"0000:00:04.0: /dev/nvme0n1p1 is mounted on /boot, /mnt/my disk"});
    EXPECT_EQ(device_in_use_reasons(read_pci_device("0000:00:05.0", t.root), t.root, t.mounts()),
              std::vector<std::string>{"0000:00:05.0: /dev/nvme1n1 is held by dm-0 (device-mapper, LVM, md or "
                                       "another stacked device is using it)"});
    EXPECT_TRUE(device_in_use_reasons(read_pci_device("0000:00:06.0", t.root), t.root, t.mounts()).empty());
    // A holder on a partition counts too.
    fs::create_directories(t.path("block/nvme2n1/nvme2n1p3/holders/md0"));
    auto r = device_in_use_reasons(read_pci_device("0000:00:06.0", t.root), t.root, t.mounts());
    ASSERT_EQ(r.size(), 1u);
    EXPECT_TRUE(contains(r[0], "0000:00:06.0: /dev/nvme2n1p3 is held by md0")) << r[0];
    // Not being able to read the mounts file is an error, not "not mounted".
    EXPECT_TRUE(contains(
        error_of([&] { device_in_use_reasons(read_pci_device("0000:00:06.0", t.root), t.root, t.root + "/nope"); }),
        "0000:00:06.0: " + t.root + "/nope: cannot open: No such file or directory"));
}

TEST(Pci, bind_refuses_a_device_in_use_and_writes_nothing) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "nvme", 5);
    t.add_namespace("0000:00:04.0", "nvme0", "nvme0n1", "nvme0n1", {"nvme0n1p1"});
    t.write("mounts", "/dev/nvme0n1p1 /boot ext4 rw 0 0\n");
    fs::create_directories(t.path("block/nvme0n1/holders/dm-1"));
    std::string e = error_of([&] { bind_to_vfio("0000:00:04.0", false, t.root, t.mounts()); });
    EXPECT_TRUE(contains(e, "0000:00:04.0: in use")) << e;
    EXPECT_TRUE(contains(e, "0000:00:04.0: /dev/nvme0n1 is held by dm-1")) << e;
    EXPECT_TRUE(contains(e, "0000:00:04.0: /dev/nvme0n1p1 is mounted on /boot")) << e;
    EXPECT_EQ(t.read(t.dev("0000:00:04.0") + "/driver_override"), "(null)\n");
    EXPECT_EQ(t.read("bus/pci/drivers/nvme/unbind"), "");
    EXPECT_EQ(t.read("bus/pci/drivers_probe"), "");
}

TEST(Pci, bind_refuses_a_device_that_is_not_nvme) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x020000", "e1000e", 5);
    EXPECT_EQ(error_of([&] { bind_to_vfio("0000:00:04.0", true, t.root, t.mounts()); }),
              "0000:00:04.0: class 0x020000 is not an NVMe controller (0x010802); not binding it");
    EXPECT_EQ(t.read(t.dev("0000:00:04.0") + "/driver_override"), "(null)\n");
    EXPECT_EQ(t.read("bus/pci/drivers/e1000e/unbind"), "");
}

// With force the writes happen; no kernel moves the driver link in the fake tree, so the final
// check fails exactly as it would on a machine without vfio-pci loaded.
TEST(Pci, forced_bind_writes_override_unbind_probe_then_checks_the_driver) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "nvme", 5);
    t.add_namespace("0000:00:04.0", "nvme0", "nvme0n1", "nvme0n1", {"nvme0n1p1"});
    t.write("mounts", "/dev/nvme0n1p1 /boot ext4 rw 0 0\n");
    std::string e = error_of([&] { bind_to_vfio("0000:00:04.0", true, t.root, t.mounts()); });
    EXPECT_EQ(e, "0000:00:04.0: " + t.root +
                     "/bus/pci/devices/0000:00:04.0/driver: driver is nvme, not vfio-pci, after drivers_probe. Is the "
                     "vfio-pci module loaded (`modprobe vfio-pci`)? Without an IOMMU vfio-pci only takes a device in "
                     "no-IOMMU mode (`modprobe vfio enable_unsafe_noiommu_mode=1`); see dmesg.");
    EXPECT_EQ(t.read(t.dev("0000:00:04.0") + "/driver_override"), "vfio-pci");
    EXPECT_EQ(t.read("bus/pci/drivers/nvme/unbind"), "0000:00:04.0");
    EXPECT_EQ(t.read("bus/pci/drivers_probe"), "0000:00:04.0");
    // The kernel's part: vfio-pci claims it. Now the check passes.
    t.set_driver("0000:00:04.0", "vfio-pci");
    EXPECT_NO_THROW(check_bound_to_vfio("0000:00:04.0", t.root));
}

TEST(Pci, bind_of_an_unbound_device_skips_the_unbind) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "");
    std::string e = error_of([&] { bind_to_vfio("0000:00:04.0", false, t.root, t.mounts()); });
    EXPECT_TRUE(contains(e, "driver: no driver, not vfio-pci") && contains(e, "modprobe vfio-pci")) << e;
    EXPECT_EQ(t.read(t.dev("0000:00:04.0") + "/driver_override"), "vfio-pci");
    EXPECT_EQ(t.read("bus/pci/drivers/nvme/unbind"), "");
    EXPECT_EQ(t.read("bus/pci/drivers_probe"), "0000:00:04.0");
}

TEST(Pci, bind_of_a_device_already_on_vfio_writes_nothing) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "vfio-pci", 5);
    t.write(t.dev("0000:00:04.0") + "/driver_override", "vfio-pci\n");
    EXPECT_NO_THROW(bind_to_vfio("0000:00:04.0", false, t.root, t.mounts()));
    EXPECT_EQ(t.read("bus/pci/drivers/vfio-pci/unbind"), "");
    EXPECT_EQ(t.read("bus/pci/drivers_probe"), "");
}

TEST(Pci, write_errors_name_the_device_the_file_and_errno) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "nvme");
    fs::remove(t.path(t.dev("0000:00:04.0") + "/driver_override"));  // e.g. a kernel older than 3.16
    EXPECT_EQ(error_of([&] { bind_to_vfio("0000:00:04.0", false, t.root, t.mounts()); }),
              "0000:00:04.0: " + t.root +
                  "/bus/pci/devices/0000:00:04.0/driver_override: cannot open to write 'vfio-pci': No such file or "
                  "directory");
    EXPECT_EQ(t.read("bus/pci/drivers/nvme/unbind"), "");  // stopped before unbinding
}

TEST(Pci, unbind_clears_the_override_and_reprobes) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "vfio-pci", 5);
    t.write(t.dev("0000:00:04.0") + "/driver_override", "vfio-pci\n");
    unbind_from_vfio("0000:00:04.0", t.root);
    EXPECT_EQ(t.read(t.dev("0000:00:04.0") + "/driver_override"), "\n");
    EXPECT_EQ(t.read("bus/pci/drivers/vfio-pci/unbind"), "0000:00:04.0");
    EXPECT_EQ(t.read("bus/pci/drivers_probe"), "0000:00:04.0");
}

TEST(Pci, unbind_leaves_a_device_on_another_driver_alone) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "nvme");
    unbind_from_vfio("0000:00:04.0", t.root);
    EXPECT_EQ(t.read(t.dev("0000:00:04.0") + "/driver_override"), "(null)\n");
    EXPECT_EQ(t.read("bus/pci/drivers/nvme/unbind"), "");
    EXPECT_EQ(t.read("bus/pci/drivers_probe"), "");
}

// ---- the rules deploy/setup.sh and ferryctl devices --local share (plan_vfio_bind)

TEST(Pci, swap_on_a_partition_is_a_reason_a_missing_swaps_file_is_none) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "nvme", 4);
    t.add_namespace("0000:00:04.0", "nvme0", "nvme0n1", "nvme0n1", {"nvme0n1p1", "nvme0n1p2"});
    t.write(
        "swaps",
        "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p2                          partition\t8388604\t0\t-2\n");
    const pci_device d = read_pci_device("0000:00:04.0", t.root);
    EXPECT_EQ(device_in_use_reasons(d, t.root, t.mounts(), t.path("swaps")),
              std::vector<std::string>{"0000:00:04.0: /dev/nvme0n1p2 is an active swap area"});
    EXPECT_TRUE(device_in_use_reasons(d, t.root, t.mounts(), t.path("no-swaps")).empty());
}

TEST(Pci, iommu_group_conflicts_ignore_vfio_stub_bridges_unbound_and_mates) {
    fake_sysfs t;
    for (const char* drv : {"pci-stub", "pcieport"})
        fs::create_directories(t.path(std::string("bus/pci/drivers/") + drv));
    t.add_device("0000:00:04.0", "0x010802", "nvme", 5);
    t.add_device("0000:00:05.0", "0x020000", "e1000e", 5);
    t.add_device("0000:00:06.0", "0x010802", "nvme", 5);
    t.add_device("0000:00:07.0", "0x060400", "pcieport", 5);
    t.add_device("0000:00:08.0", "0x010802", "", 5);
    t.add_device("0000:00:09.0", "0x010802", "pci-stub", 5);
    EXPECT_EQ(iommu_group_conflicts("0000:00:04.0", {}, t.root),
              (std::vector<std::string>{"0000:00:05.0 (e1000e)", "0000:00:06.0 (nvme)"}));
    // 06.0 is bound in the same run: only the NIC is in the way.
    EXPECT_EQ(iommu_group_conflicts("0000:00:04.0", {"0000:00:06.0"}, t.root),
              std::vector<std::string>{"0000:00:05.0 (e1000e)"});
    t.set_driver("0000:00:05.0", "vfio-pci");
    EXPECT_TRUE(iommu_group_conflicts("0000:00:04.0", {"0000:00:06.0"}, t.root).empty());
}

TEST(Pci, plan_refuses_with_reasons_and_keeps_group_mates_together) {
    fake_sysfs t;
    t.add_device("0000:00:03.0", "0x010802", "nvme", 3);
    t.add_namespace("0000:00:03.0", "nvme0", "nvme0n1", "nvme0n1", {"nvme0n1p1"});
    t.write("mounts", "/dev/nvme0n1p1 /boot ext4 rw 0 0\n");
    t.add_device("0000:00:04.0", "0x010802", "nvme", 4);
    t.add_device("0000:00:05.0", "0x020000", "e1000e", 5);
    t.add_device("0000:00:06.0", "0x010802", "nvme", 5);  // shares group 5 with the NIC
    t.add_device("0000:00:07.0", "0x010802", "nvme", 7);  // and two NVMe in group 7
    t.add_device("0000:00:08.0", "0x010802", "nvme", 7);
    t.add_device("0000:00:0a.0", "0x010802", "vfio-pci", 10);

    vfio_bind_plan p = plan_vfio_bind({"0000:00:03.0", "0000:00:04.0", "0000:00:05.0", "0000:00:06.0", "0000:00:07.0",
                                       "0000:00:08.0", "0000:00:0A.0", "0000:00:09.0", "0000:00:4.0", "0000:00:04.0"},
                                      false, t.root, t.mounts(), t.path("swaps"));
    EXPECT_TRUE(p.refused);
    EXPECT_EQ(p.bind, (std::vector<std::string>{"0000:00:04.0", "0000:00:07.0", "0000:00:08.0"}));
    std::string all;
    for (const auto& m : p.messages) all += m + "\n";
    EXPECT_TRUE(contains(all,
                         "refused 0000:00:03.0: in use (unmount it / deactivate its holders, or --force):\n  "
                         "0000:00:03.0: /dev/nvme0n1p1 is mounted on /boot\n"))
        << all;
    EXPECT_TRUE(contains(all, "refused 0000:00:05.0: class 0x020000 is not an NVMe controller (0x010802)\n")) << all;
    EXPECT_TRUE(contains(all, "refused 0000:00:06.0: IOMMU group 5 also holds 0000:00:05.0 (e1000e) on another"))
        << all;
    EXPECT_TRUE(contains(all, "0000:00:0a.0: already bound to vfio-pci\n")) << all;
    EXPECT_TRUE(contains(all, "refused 0000:00:09.0: no such PCI device")) << all;
    EXPECT_TRUE(contains(all, "refused 0000:00:4.0: not a PCI address")) << all;
    EXPECT_TRUE(p.warnings.empty());

    // Dropping 07.0 leaves 08.0 in a group with a device still on nvme: both are refused.
    p = plan_vfio_bind({"0000:00:08.0"}, false, t.root, t.mounts(), t.path("swaps"));
    EXPECT_TRUE(p.bind.empty());
    EXPECT_TRUE(contains(p.messages.at(0), "IOMMU group 7 also holds 0000:00:07.0 (nvme)")) << p.messages.at(0);

    // --force takes a device in use, with a warning naming why; never a shared group.
    p = plan_vfio_bind({"0000:00:03.0", "0000:00:06.0"}, true, t.root, t.mounts(), t.path("swaps"));
    EXPECT_EQ(p.bind, std::vector<std::string>{"0000:00:03.0"});
    ASSERT_EQ(p.warnings.size(), 1u);
    EXPECT_EQ(p.warnings[0],
              "--force: binding 0000:00:03.0 although it is in use:\n  0000:00:03.0: /dev/nvme0n1p1 is "
              "mounted on /boot");
    EXPECT_TRUE(p.refused);
}

TEST(Pci, bind_refuses_a_device_in_a_shared_iommu_group_and_writes_nothing) {
    fake_sysfs t;
    t.add_device("0000:00:05.0", "0x020000", "e1000e", 5);
    t.add_device("0000:00:06.0", "0x010802", "nvme", 5);
    std::string e = error_of([&] { bind_to_vfio("0000:00:06.0", false, t.root, t.mounts()); });
    EXPECT_TRUE(contains(e, "0000:00:06.0: its IOMMU group also holds 0000:00:05.0 (e1000e) on another driver")) << e;
    EXPECT_EQ(t.read(t.dev("0000:00:06.0") + "/driver_override"), "(null)\n");
    EXPECT_EQ(t.read("bus/pci/drivers_probe"), "");
}

TEST(Pci, vfio_group_users_only_on_the_real_sysfs) {
    fake_sysfs t;
    t.add_device("0000:00:04.0", "0x010802", "vfio-pci", 4);
    EXPECT_TRUE(vfio_group_users("0000:00:04.0", t.root).empty());
}
