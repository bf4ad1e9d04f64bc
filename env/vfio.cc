#include "env/vfio.hh"

#include <fcntl.h>
#include <linux/vfio.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "env/dma.hh"
#include "env/pci.hh"

namespace ferry::env {

namespace {

namespace fs = std::filesystem;

std::string errno_text() {
    return std::strerror(errno);
}

// The process's one container. Never destroyed: regions may be unmapped from it during exit.
class container final : public dma_mapper {
public:
    static container& get() {
        static auto* c = new container();
        return *c;
    }

    // Adds a group; the first one decides the IOMMU type and installs the mapper.
    void attach(int group_fd, bool noiommu, const std::string& bdf) {
        std::unique_lock g(_lock);
        if (_fd < 0) open_container();
        if (_groups > 0 && noiommu != _noiommu)
            throw std::runtime_error(bdf + ": cannot mix no-IOMMU and IOMMU-protected devices in one process");
        if (::ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &_fd) != 0)
            throw std::runtime_error(bdf + ": VFIO_GROUP_SET_CONTAINER: " + errno_text());
        if (_groups++ > 0) return;
        _noiommu = noiommu;
        unsigned long type = noiommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU;
        if (!noiommu && ::ioctl(_fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0) type = VFIO_TYPE1_IOMMU;
        if (::ioctl(_fd, VFIO_SET_IOMMU, type) != 0) {
            --_groups;
            throw std::runtime_error(bdf + ": VFIO_SET_IOMMU: " + errno_text());
        }
        if (!noiommu) read_iova_ranges();
        g.unlock();  // set_mapper maps every region, calling back into map()
        try {
            dma_space::set_mapper(this);
        } catch (...) {
            g.lock();
            --_groups;
            throw;
        }
        g.lock();
        if (noiommu)
            spdlog::warn(
                "vfio: {} is in NO-IOMMU mode: the device is given physical addresses and can DMA "
                "anywhere in memory; the kernel is tainted. Use an IOMMU in production.",
                bdf);
        else
            spdlog::info("vfio: container with {} IOMMU; DMA memory mapped at IOVAs from {:#x} within {}",
                         type == VFIO_TYPE1v2_IOMMU ? "type1v2" : "type1", _next_iova, ranges_text());
    }

    // A group is leaving. With the last one the container loses its IOMMU context, so every
    // region is unmapped first (and mapped again if a device is opened later).
    void detach() {
        std::unique_lock g(_lock);
        if (_groups == 0 || --_groups > 0) return;
        g.unlock();
        dma_space::set_mapper(nullptr);
        g.lock();
        _free.clear();
        _next_iova = 256ull << 20;
        _ranges.clear();
    }

    uint64_t map(void* va, size_t bytes, bool hugepages, std::vector<uint64_t>& page_addrs) override {
        std::lock_guard g(_lock);
        if (_noiommu) {
            if (!hugepages)
                throw std::runtime_error(
                    "vfio no-IOMMU mode needs DMA memory on hugepages, and none are free: "
                    "reserve them (deploy/setup.sh config --hugemem MiB)");
            page_addrs = physical_addresses(va, bytes);
            return 0;
        }
        uint64_t iova = allocate_iova(bytes);
        vfio_iommu_type1_dma_map m{};
        m.argsz = sizeof(m);
        m.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
        m.vaddr = reinterpret_cast<uint64_t>(va);
        m.iova = iova;
        m.size = bytes;
        if (::ioctl(_fd, VFIO_IOMMU_MAP_DMA, &m) != 0) {
            _free[bytes].push_back(iova);
            throw std::runtime_error("VFIO_IOMMU_MAP_DMA of " + std::to_string(bytes >> 10) + " KiB: " + errno_text() +
                                     " (is RLIMIT_MEMLOCK large enough?)");
        }
        return iova;
    }

    void unmap(void*, size_t bytes, uint64_t iova) override {
        std::lock_guard g(_lock);
        if (_noiommu) return;
        vfio_iommu_type1_dma_unmap u{};
        u.argsz = sizeof(u);
        u.iova = iova;
        u.size = bytes;
        if (::ioctl(_fd, VFIO_IOMMU_UNMAP_DMA, &u) != 0)
            spdlog::error("vfio: VFIO_IOMMU_UNMAP_DMA iova {:#x} size {:#x}: {}", iova, bytes, errno_text());
        else
            _free[bytes].push_back(iova);
    }

private:
    void open_container() {
        _fd = ::open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (_fd < 0) throw std::runtime_error("/dev/vfio/vfio: " + errno_text() + " (is the vfio-pci module loaded?)");
        if (::ioctl(_fd, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
            throw std::runtime_error("/dev/vfio/vfio: unknown VFIO API version");
    }

    std::string ranges_text() const {
        std::string t;
        for (auto [a, b] : _ranges) t += fmt::format("{}[{:#x}, {:#x}]", t.empty() ? "" : " ", a, b);
        return t;
    }

    void read_iova_ranges() {
        std::vector<uint8_t> buf(4096);
        auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
        info->argsz = static_cast<uint32_t>(buf.size());
        if (::ioctl(_fd, VFIO_IOMMU_GET_INFO, info) == 0 && (info->flags & VFIO_IOMMU_INFO_CAPS) && info->cap_offset) {
            for (uint32_t off = info->cap_offset; off && off + sizeof(vfio_info_cap_header) <= buf.size();) {
                auto* h = reinterpret_cast<vfio_info_cap_header*>(buf.data() + off);
                if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
                    auto* r = reinterpret_cast<vfio_iommu_type1_info_cap_iova_range*>(h);
                    for (uint32_t i = 0; i < r->nr_iovas; ++i)
                        _ranges.emplace_back(r->iova_ranges[i].start, r->iova_ranges[i].end);
                }
                off = h->next;
            }
        }
        // Without the capability: below 4 GiB minus the x86 MSI window, a safe common subset.
        if (_ranges.empty()) _ranges = {{0, 0xFEDFFFFF}, {0xFEF00000, (1ull << 39) - 1}};
    }

    // IOVAs are handed out upwards from 256 MiB (clear of the legacy low ranges), hugepage
    // aligned, inside the IOMMU's valid ranges; freed ranges are reused for the same size.
    uint64_t allocate_iova(size_t bytes) {
        auto& f = _free[bytes];
        if (!f.empty()) {
            uint64_t v = f.back();
            f.pop_back();
            return v;
        }
        for (auto [start, end] : _ranges) {
            uint64_t a = std::max<uint64_t>(_next_iova, start);
            a = (a + hugepage_size - 1) / hugepage_size * hugepage_size;
            if (a + bytes - 1 <= end && a + bytes > a) {
                _next_iova = a + bytes;
                return a;
            }
        }
        throw std::runtime_error("vfio: no IOVA space left for " + std::to_string(bytes) + " bytes");
    }

    static std::vector<uint64_t> physical_addresses(void* va, size_t bytes) {
        int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw std::runtime_error("/proc/self/pagemap: " + errno_text());
        std::vector<uint64_t> out;
        for (size_t off = 0; off < bytes; off += hugepage_size) {
            auto v = reinterpret_cast<uint64_t>(va) + off;
            uint64_t entry = 0;
            if (::pread(fd, &entry, sizeof(entry), static_cast<off_t>(v / 4096 * 8)) != sizeof(entry)) {
                ::close(fd);
                throw std::runtime_error("/proc/self/pagemap: read: " + errno_text());
            }
            uint64_t pfn = entry & ((1ull << 55) - 1);
            if (!(entry >> 63) || pfn == 0) {
                ::close(fd);
                throw std::runtime_error(
                    "/proc/self/pagemap gives no physical address (no-IOMMU mode needs root "
                    "with CAP_SYS_ADMIN)");
            }
            out.push_back(pfn * 4096 + v % 4096);
        }
        ::close(fd);
        return out;
    }

    std::recursive_mutex _lock;
    int _fd = -1;
    unsigned _groups = 0;
    bool _noiommu = false;
    std::vector<std::pair<uint64_t, uint64_t>> _ranges;  // inclusive
    uint64_t _next_iova = 256ull << 20;
    std::map<size_t, std::vector<uint64_t>> _free;
};

}  // namespace

vfio_device::vfio_device(const std::string& bdf) : _bdf(bdf) {
    const pci_device pci = read_pci_device(bdf);  // throws naming the BDF if there is none
    if (pci.driver != "vfio-pci")
        throw std::runtime_error(bdf + ": bound to " + (pci.driver.empty() ? std::string("no driver") : pci.driver) +
                                 ", not vfio-pci; give it to ferry with: deploy/setup.sh config --devices " + bdf);
    if (pci.iommu_group < 0)
        throw std::runtime_error(bdf + ": no IOMMU group (no IOMMU, and vfio's no-IOMMU mode is off)");
    const std::string group = std::to_string(pci.iommu_group);

    std::string node = "/dev/vfio/noiommu-" + group;
    _noiommu = fs::exists(node);
    if (!_noiommu) node = "/dev/vfio/" + group;
    _group_fd = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    if (_group_fd < 0)
        throw std::runtime_error(bdf + ": " + node + ": " + errno_text() +
                                 (errno == EBUSY ? " (another process has the device open)" : ""));
    bool attached = false;
    try {
        vfio_group_status st{};
        st.argsz = sizeof(st);
        if (::ioctl(_group_fd, VFIO_GROUP_GET_STATUS, &st) != 0)
            throw std::runtime_error(bdf + ": VFIO_GROUP_GET_STATUS: " + errno_text());
        if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
            std::string others;
            for (const auto& name : iommu_group_members(bdf)) {
                const std::string d = read_pci_device(name).driver;
                if (d.empty() || d == "vfio-pci") continue;
                others += (others.empty() ? "" : ", ") + name + " (driver " + d + ")";
            }
            throw std::runtime_error(bdf + ": IOMMU group " + group +
                                     " is not viable: every device in it must be bound to vfio-pci or unbound; "
                                     "these are not: " +
                                     (others.empty() ? std::string("unknown") : others));
        }
        container::get().attach(_group_fd, _noiommu, bdf);
        attached = true;

        _device_fd = ::ioctl(_group_fd, VFIO_GROUP_GET_DEVICE_FD, bdf.c_str());
        if (_device_fd < 0) throw std::runtime_error(bdf + ": VFIO_GROUP_GET_DEVICE_FD: " + errno_text());
        vfio_device_info info{};
        info.argsz = sizeof(info);
        if (::ioctl(_device_fd, VFIO_DEVICE_GET_INFO, &info) != 0)
            throw std::runtime_error(bdf + ": VFIO_DEVICE_GET_INFO: " + errno_text());
        _can_reset = info.flags & VFIO_DEVICE_FLAGS_RESET;

        vfio_region_info cfg{};
        cfg.argsz = sizeof(cfg);
        cfg.index = VFIO_PCI_CONFIG_REGION_INDEX;
        if (::ioctl(_device_fd, VFIO_DEVICE_GET_REGION_INFO, &cfg) != 0)
            throw std::runtime_error(bdf + ": config space region: " + errno_text());
        _config_offset = cfg.offset;

        vfio_region_info bar{};
        bar.argsz = sizeof(bar);
        bar.index = VFIO_PCI_BAR0_REGION_INDEX;
        if (::ioctl(_device_fd, VFIO_DEVICE_GET_REGION_INFO, &bar) != 0)
            throw std::runtime_error(bdf + ": BAR0 region: " + errno_text());
        if (!(bar.flags & VFIO_REGION_INFO_FLAG_MMAP) || bar.size < 0x2000)
            throw std::runtime_error(bdf + ": BAR0 cannot be mapped (size " + std::to_string(bar.size) + ")");
        void* p =
            ::mmap(nullptr, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, _device_fd, static_cast<off_t>(bar.offset));
        if (p == MAP_FAILED) throw std::runtime_error(bdf + ": mmap BAR0: " + errno_text());
        _bar0 = static_cast<volatile uint8_t*>(p);
        _bar0_size = bar.size;

        // Memory space on, bus master on (the device may DMA), legacy INTx off (we poll).
        uint16_t cmd = config_read16(0x04);
        config_write16(0x04, static_cast<uint16_t>(cmd | 0x0002 | 0x0004 | 0x0400));
    } catch (...) {
        if (_bar0) ::munmap(const_cast<uint8_t*>(_bar0), _bar0_size);
        if (_device_fd >= 0) ::close(_device_fd);
        if (attached) container::get().detach();
        ::close(_group_fd);
        throw;
    }
    spdlog::info("vfio: {} opened ({}, BAR0 {} KiB, group {})", bdf, _noiommu ? "no-IOMMU" : "IOMMU", _bar0_size >> 10,
                 group);
}

vfio_device::~vfio_device() {
    // Bus mastering off: a device we no longer drive must not write into freed memory.
    try {
        config_write16(0x04, static_cast<uint16_t>(config_read16(0x04) & ~0x0004));
    } catch (const std::exception& e) {
        spdlog::warn("vfio: {}: {}", _bdf, e.what());
    }
    ::munmap(const_cast<uint8_t*>(_bar0), _bar0_size);
    ::close(_device_fd);
    container::get().detach();
    ::close(_group_fd);
}

bool vfio_device::reset() {
    return _can_reset && ::ioctl(_device_fd, VFIO_DEVICE_RESET) == 0;
}

uint16_t vfio_device::config_read16(uint32_t offset) const {
    uint16_t v = 0;
    if (::pread(_device_fd, &v, sizeof(v), static_cast<off_t>(_config_offset + offset)) != sizeof(v))
        throw std::runtime_error(_bdf + ": config space read at " + std::to_string(offset) + ": " + errno_text());
    return v;
}

void vfio_device::config_write16(uint32_t offset, uint16_t value) const {
    if (::pwrite(_device_fd, &value, sizeof(value), static_cast<off_t>(_config_offset + offset)) != sizeof(value))
        throw std::runtime_error(_bdf + ": config space write at " + std::to_string(offset) + ": " + errno_text());
}

}  // namespace ferry::env
