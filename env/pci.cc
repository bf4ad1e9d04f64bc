#include "env/pci.hh"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <stdexcept>

namespace ferry::env {
namespace fs = std::filesystem;

namespace {
std::string device_dir(const std::string& sysfs, const std::string& bdf) {
    return sysfs + "/bus/pci/devices/" + bdf;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
    return s;
}

// Every error names the device, the file and the reason (errno text), so a failed setup can be
// fixed without strace.
[[noreturn]] void fail(const std::string& bdf, const std::string& path, const std::string& what, int err) {
    throw std::runtime_error(bdf + ": " + path + ": " + what + ": " + std::strerror(err));
}

// Whole file, trailing whitespace removed. false only when it does not exist.
bool read_file(const std::string& bdf, const std::string& path, std::string& out) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return false;
        fail(bdf, path, "cannot open", errno);
    }
    out.clear();
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    int err = errno;
    ::close(fd);
    if (n < 0) fail(bdf, path, "cannot read", err);
    while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
    return true;
}

std::string read_required(const std::string& bdf, const std::string& path) {
    std::string s;
    if (!read_file(bdf, path, s)) fail(bdf, path, "cannot open", ENOENT);
    return s;
}

// sysfs attributes take a value in a single write(); a short write means it was not accepted.
void write_attr(const std::string& bdf, const std::string& path, std::string_view value) {
    const std::string shown = value == "\n" ? "\\n" : std::string(value);
    int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) fail(bdf, path, "cannot open to write '" + shown + "'", errno);
    ssize_t n = ::write(fd, value.data(), value.size());
    int err = errno;
    ::close(fd);
    if (n < 0) fail(bdf, path, "cannot write '" + shown + "'", err);
    if (static_cast<size_t>(n) != value.size()) fail(bdf, path, "short write of '" + shown + "'", EIO);
}

// Last component of a symlink's target ("../../../bus/pci/drivers/nvme" -> "nvme"); "" when
// there is no link (an unbound device has no driver link).
std::string link_name(const std::string& bdf, const std::string& path) {
    char buf[PATH_MAX];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
    if (n < 0) {
        if (errno == ENOENT) return "";
        fail(bdf, path, "cannot read link", errno);
    }
    return fs::path(std::string(buf, static_cast<size_t>(n))).filename().string();
}

uint32_t parse_hex(const std::string& bdf, const std::string& path, const std::string& text) {
    std::string_view s = text;
    if (s.starts_with("0x") || s.starts_with("0X")) s.remove_prefix(2);
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size())
        throw std::runtime_error(bdf + ": " + path + ": not a hex number: '" + text + "'");
    return v;
}

int parse_int(const std::string& text, int fallback) {
    int v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    return ec == std::errc() && end == text.data() + text.size() ? v : fallback;
}

// Names in a directory, sorted; empty when it does not exist.
std::vector<std::string> list_dir(const std::string& bdf, const std::string& path) {
    std::vector<std::string> names;
    std::error_code ec;
    fs::directory_iterator it(path, ec);
    if (ec) {
        if (ec == std::errc::no_such_file_or_directory) return names;
        fail(bdf, path, "cannot list", ec.value());
    }
    for (; it != fs::directory_iterator(); it.increment(ec)) names.push_back(it->path().filename().string());
    if (ec) fail(bdf, path, "cannot list", ec.value());
    std::sort(names.begin(), names.end());
    return names;
}

// Namespaces live under the controller, sysfs/bus/pci/devices/BDF/nvme/nvmeC/. Without native
// multipath a namespace is the block device nvme<S>n<N> itself; with it, the controller holds the
// hidden path device nvme<S>c<C>n<N> and the block device is nvme<S>n<N> (under nvme-subsystem).
std::vector<std::string> block_devices_of(const std::string& bdf, const std::string& dir) {
    static const std::regex ns_name("nvme([0-9]+)(c[0-9]+)?n([0-9]+)");
    std::vector<std::string> disks;
    for (const auto& ctrl : list_dir(bdf, dir + "/nvme"))
        for (const auto& name : list_dir(bdf, dir + "/nvme/" + ctrl)) {
            std::smatch m;
            if (std::regex_match(name, m, ns_name)) disks.push_back("nvme" + m[1].str() + "n" + m[3].str());
        }
    std::sort(disks.begin(), disks.end());
    disks.erase(std::unique(disks.begin(), disks.end()), disks.end());
    return disks;
}

pci_device read_device(const std::string& bdf, const std::string& sysfs) {
    const std::string dir = device_dir(sysfs, bdf);
    pci_device d;
    d.bdf = bdf;
    d.class_code = parse_hex(bdf, dir + "/class", read_required(bdf, dir + "/class")) & 0xFFFFFF;
    d.vendor = static_cast<uint16_t>(parse_hex(bdf, dir + "/vendor", read_required(bdf, dir + "/vendor")));
    d.device = static_cast<uint16_t>(parse_hex(bdf, dir + "/device", read_required(bdf, dir + "/device")));
    d.driver = link_name(bdf, dir + "/driver");
    const std::string group = link_name(bdf, dir + "/iommu_group");
    d.iommu_group = group.empty() ? -1 : parse_int(group, -1);
    std::string node;
    d.numa_node = read_file(bdf, dir + "/numa_node", node) ? parse_int(node, -1) : -1;
    d.block_devices = block_devices_of(bdf, dir);
    return d;
}

// /proc/mounts escapes space, tab, newline and backslash in paths as \ooo.
std::string unescape_mount_path(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        auto octal = [&](size_t j) { return j < s.size() && s[j] >= '0' && s[j] <= '7'; };
        if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
            out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

// Mount points of /dev/NAME (first field of a mounts line), in file order.
std::vector<std::string> mount_points(const std::string& mounts, const std::string& name) {
    std::vector<std::string> points;
    const std::string dev = "/dev/" + name;
    size_t pos = 0;
    while (pos < mounts.size()) {
        size_t eol = mounts.find('\n', pos);
        if (eol == std::string::npos) eol = mounts.size();
        std::string_view line(mounts.data() + pos, eol - pos);
        pos = eol + 1;
        size_t sp = line.find(' ');
        if (sp == std::string_view::npos || line.substr(0, sp) != dev) continue;
        size_t sp2 = line.find(' ', sp + 1);
        points.push_back(unescape_mount_path(
            std::string(line.substr(sp + 1, sp2 == std::string_view::npos ? std::string_view::npos : sp2 - sp - 1))));
    }
    return points;
}
// /proc/swaps: a header line, then "FILENAME TYPE SIZE USED PRIORITY" per swap area.
bool swap_active(const std::string& swaps, const std::string& name) {
    const std::string dev = "/dev/" + name;
    size_t pos = 0;
    while (pos < swaps.size()) {
        size_t eol = swaps.find('\n', pos);
        if (eol == std::string::npos) eol = swaps.size();
        std::string_view line(swaps.data() + pos, eol - pos);
        pos = eol + 1;
        size_t end = line.find_first_of(" \t");
        if (line.substr(0, end) == dev) return true;
    }
    return false;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}
}  // namespace

bool valid_bdf(std::string_view bdf) {
    if (bdf.size() != 12 || bdf[4] != ':' || bdf[7] != ':' || bdf[10] != '.') return false;
    for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11})
        if (!std::isxdigit(static_cast<unsigned char>(bdf[i]))) return false;
    // Device numbers are 5 bits (00-1f), functions 3 bits (0-7).
    return (bdf[8] == '0' || bdf[8] == '1') && bdf[11] >= '0' && bdf[11] <= '7';
}

std::vector<pci_device> list_nvme_devices(const std::string& sysfs) {
    const std::string dir = sysfs + "/bus/pci/devices";
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail("PCI", dir, "cannot list devices", ec ? ec.value() : ENOENT);
    std::vector<pci_device> out;
    for (const auto& bdf : list_dir("PCI", dir)) {
        const std::string cls = dir + "/" + bdf + "/class";
        if ((parse_hex(bdf, cls, read_required(bdf, cls)) & 0xFFFFFF) == nvme_class_code)
            out.push_back(read_device(bdf, sysfs));
    }
    return out;  // list_dir sorted the names, and BDFs sort by their text
}

pci_device read_pci_device(const std::string& bdf, const std::string& sysfs) {
    if (!valid_bdf(bdf))
        throw std::runtime_error("'" + bdf + "' is not a PCI address (DDDD:BB:DD.F, e.g. 0000:01:00.0)");
    std::string b = bdf;
    std::transform(b.begin(), b.end(), b.begin(), [](unsigned char c) { return std::tolower(c); });
    const std::string dir = device_dir(sysfs, b);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail(b, dir, "no such PCI device", ec ? ec.value() : ENOENT);
    return read_device(b, sysfs);
}

std::vector<std::string> iommu_group_members(const std::string& bdf, const std::string& sysfs) {
    return list_dir(bdf, device_dir(sysfs, bdf) + "/iommu_group/devices");
}

std::vector<std::string> device_in_use_reasons(const pci_device& dev, const std::string& sysfs,
                                               const std::string& mounts_file, const std::string& swaps_file) {
    std::vector<std::string> reasons;
    if (dev.block_devices.empty()) return reasons;
    const std::string mounts = read_required(dev.bdf, mounts_file);
    std::string swaps;
    if (!read_file(dev.bdf, swaps_file, swaps)) swaps.clear();
    for (const auto& disk : dev.block_devices) {
        const std::string disk_dir = sysfs + "/block/" + disk;
        // The whole namespace and each partition (sysfs/block/nvme0n1/nvme0n1p1).
        std::vector<std::pair<std::string, std::string>> parts{{disk, disk_dir}};
        for (const auto& name : list_dir(dev.bdf, disk_dir))
            if (name.starts_with(disk + "p")) parts.emplace_back(name, disk_dir + "/" + name);
        for (const auto& [name, dir] : parts) {
            auto points = mount_points(mounts, name);
            if (!points.empty()) reasons.push_back(dev.bdf + ": /dev/" + name + " is mounted on " + join(points, ", "));
            auto holders = list_dir(dev.bdf, dir + "/holders");
            if (!holders.empty())
                reasons.push_back(dev.bdf + ": /dev/" + name + " is held by " + join(holders, ", ") +
                                  " (device-mapper, LVM, md or another stacked device is using it)");
            if (swap_active(swaps, name)) reasons.push_back(dev.bdf + ": /dev/" + name + " is an active swap area");
        }
    }
    return reasons;
}

void bind_to_vfio(const std::string& bdf, bool force, const std::string& sysfs, const std::string& mounts_file,
                  const std::string& swaps_file) {
    const pci_device d = read_pci_device(bdf, sysfs);
    if (d.driver == "vfio-pci") return;
    if (d.class_code != nvme_class_code) {
        char cls[16];
        std::snprintf(cls, sizeof(cls), "0x%06x", d.class_code);
        throw std::runtime_error(d.bdf + ": class " + cls + " is not an NVMe controller (0x010802); not binding it");
    }
    if (!force) {
        auto reasons = device_in_use_reasons(d, sysfs, mounts_file, swaps_file);
        if (!reasons.empty())
            throw std::runtime_error(d.bdf + ": in use, not taking it from the kernel (force overrides):\n  " +
                                     join(reasons, "\n  "));
        auto conflicts = iommu_group_conflicts(d.bdf, {}, sysfs);
        if (!conflicts.empty())
            throw std::runtime_error(d.bdf + ": its IOMMU group also holds " + join(conflicts, " ") +
                                     " on another driver; vfio can only use a group whose devices are all on "
                                     "vfio-pci or unbound");
    }
    const std::string dir = device_dir(sysfs, d.bdf);
    // The override comes first: from then on only vfio-pci may claim the device, so nvme cannot
    // grab it back between the unbind and the probe.
    write_attr(d.bdf, dir + "/driver_override", "vfio-pci");
    if (!d.driver.empty()) write_attr(d.bdf, dir + "/driver/unbind", d.bdf);
    write_attr(d.bdf, sysfs + "/bus/pci/drivers_probe", d.bdf);
    check_bound_to_vfio(d.bdf, sysfs);
}

void check_bound_to_vfio(const std::string& bdf, const std::string& sysfs) {
    const std::string link = device_dir(sysfs, bdf) + "/driver";
    std::string driver = link_name(bdf, link);
    for (int i = 0; i < 20 && driver != "vfio-pci"; ++i) {
        ::usleep(100'000);
        driver = link_name(bdf, link);
    }
    if (driver == "vfio-pci") return;
    throw std::runtime_error(bdf + ": " + link + ": " + (driver.empty() ? "no driver" : "driver is " + driver) +
                             ", not vfio-pci, after drivers_probe. Is the vfio-pci module loaded (`modprobe "
                             "vfio-pci`)? Without an IOMMU vfio-pci only takes a device in no-IOMMU mode "
                             "(`modprobe vfio enable_unsafe_noiommu_mode=1`); see dmesg.");
}

void unbind_from_vfio(const std::string& bdf, const std::string& sysfs) {
    const pci_device d = read_pci_device(bdf, sysfs);
    if (!d.driver.empty() && d.driver != "vfio-pci") return;  // already with a kernel driver
    const std::string dir = device_dir(sysfs, d.bdf);
    write_attr(d.bdf, dir + "/driver_override", "\n");  // a lone newline clears the override
    if (!d.driver.empty()) write_attr(d.bdf, dir + "/driver/unbind", d.bdf);
    write_attr(d.bdf, sysfs + "/bus/pci/drivers_probe", d.bdf);
}

}  // namespace ferry::env

namespace ferry::env {

std::vector<std::string> iommu_group_conflicts(const std::string& bdf, const std::vector<std::string>& binding_too,
                                               const std::string& sysfs) {
    std::vector<std::string> out;
    for (const auto& member : iommu_group_members(bdf, sysfs)) {
        if (member == bdf || std::find(binding_too.begin(), binding_too.end(), member) != binding_too.end()) continue;
        const std::string driver = link_name(member, device_dir(sysfs, member) + "/driver");
        if (driver.empty() || driver.starts_with("vfio") || driver == "pci-stub" || driver == "pcieport") continue;
        out.push_back(member + " (" + driver + ")");
    }
    return out;
}

std::vector<std::string> vfio_group_users(const std::string& bdf, const std::string& sysfs) {
    std::vector<std::string> users;
    if (sysfs != "/sys") return users;
    const std::string group = link_name(bdf, device_dir(sysfs, bdf) + "/iommu_group");
    if (group.empty()) return users;
    const std::string node = "/dev/vfio/" + group, noiommu_node = "/dev/vfio/noiommu-" + group;
    std::error_code ec;
    for (fs::directory_iterator proc("/proc", ec), end; !ec && proc != end; proc.increment(ec)) {
        const std::string pid = proc->path().filename().string();
        if (pid.empty() || !std::all_of(pid.begin(), pid.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
        std::error_code fd_ec;
        for (fs::directory_iterator fd(proc->path() / "fd", fd_ec), fd_end; !fd_ec && fd != fd_end;
             fd.increment(fd_ec)) {
            std::error_code link_ec;
            const std::string target = fs::read_symlink(fd->path(), link_ec).string();
            if (link_ec || (target != node && target != noiommu_node)) continue;
            std::string comm;
            try {
                read_file(pid, "/proc/" + pid + "/comm", comm);
            } catch (const std::exception&) {
            }
            users.push_back(comm + "[" + pid + "]");
            break;
        }
    }
    return users;
}

vfio_bind_plan plan_vfio_bind(const std::vector<std::string>& candidates, bool force, const std::string& sysfs,
                              const std::string& mounts_file, const std::string& swaps_file) {
    vfio_bind_plan plan;
    auto refuse = [&](const std::string& bdf, const std::string& why) {
        plan.messages.push_back("refused " + bdf + ": " + why);
        plan.refused = true;
    };
    for (const auto& typed : candidates) {
        if (!valid_bdf(typed)) {
            refuse(typed, "not a PCI address (DDDD:BB:DD.F, e.g. 0000:01:00.0)");
            continue;
        }
        const std::string bdf = lower(typed);
        if (std::find(plan.bind.begin(), plan.bind.end(), bdf) != plan.bind.end()) continue;  // named twice
        const std::string dir = device_dir(sysfs, bdf);
        std::error_code ec;
        if (!fs::is_directory(dir, ec)) {
            refuse(bdf, "no such PCI device (" + dir + " does not exist)");
            continue;
        }
        const pci_device d = read_device(bdf, sysfs);
        if (d.class_code != nvme_class_code) {
            char cls[16];
            std::snprintf(cls, sizeof(cls), "0x%06x", d.class_code);
            refuse(bdf, std::string("class ") + cls + " is not an NVMe controller (0x010802)");
            continue;
        }
        if (d.driver == "vfio-pci") {
            plan.messages.push_back(bdf + ": already bound to vfio-pci");
            continue;
        }
        const auto reasons = device_in_use_reasons(d, sysfs, mounts_file, swaps_file);
        if (!reasons.empty()) {
            if (force) {
                plan.warnings.push_back("--force: binding " + bdf + " although it is in use:\n  " +
                                        join(reasons, "\n  "));
            } else {
                refuse(bdf, "in use (unmount it / deactivate its holders, or --force):\n  " + join(reasons, "\n  "));
                continue;
            }
        }
        plan.bind.push_back(bdf);
    }
    for (bool changed = true; changed;) {
        changed = false;
        std::vector<std::string> keep;
        for (const auto& bdf : plan.bind) {
            const auto conflicts = iommu_group_conflicts(bdf, plan.bind, sysfs);
            if (conflicts.empty()) {
                keep.push_back(bdf);
                continue;
            }
            const std::string group = link_name(bdf, device_dir(sysfs, bdf) + "/iommu_group");
            refuse(bdf, "IOMMU group " + group + " also holds " + join(conflicts, " ") +
                            " on another driver; vfio can only use a group whose devices are all on vfio-pci or "
                            "unbound (unbind those first, or move the device to a slot with its own group)");
            changed = true;
        }
        plan.bind = std::move(keep);
    }
    return plan;
}

}  // namespace ferry::env
