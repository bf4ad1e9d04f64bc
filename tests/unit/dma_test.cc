// env/dma: regions get device addresses from the installed mapper (the VFIO container in
// ferryd), whether they existed before it or come after, and give them back when destroyed.
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>

#include "env/dma.hh"
#include "env/dma_pool.hh"

namespace ferry {
namespace {

// Contiguous IOVAs from 1 GiB up (type1 IOMMU), or per-hugepage addresses (no-IOMMU).
class fake_mapper final : public env::dma_mapper {
public:
    explicit fake_mapper(bool per_page) : _per_page(per_page) {}
    uint64_t map(void* va, size_t bytes, bool, std::vector<uint64_t>& pages) override {
        if (fail_next) {
            fail_next = false;
            throw std::runtime_error("MAP_DMA refused");
        }
        mapped[va] = bytes;
        if (_per_page) {
            pages.clear();
            // Deliberately not contiguous: page i of every region at 0x80000000 + (n - i) * 2 MiB.
            const size_t n = bytes / env::hugepage_size;
            for (size_t i = 0; i < n; ++i) pages.push_back(0x80000000ull + (n - i) * env::hugepage_size);
            return 0;
        }
        uint64_t iova = _next;
        _next += bytes;
        return iova;
    }
    void unmap(void* va, size_t, uint64_t) override { mapped.erase(va); }

    std::map<void*, size_t> mapped;
    bool fail_next = false;

private:
    bool _per_page;
    uint64_t _next = 1ull << 30;
};

struct mapper_guard {
    explicit mapper_guard(env::dma_mapper* m) { env::dma_space::set_mapper(m); }
    ~mapper_guard() { env::dma_space::set_mapper(nullptr); }
};

TEST(Dma, WithoutAMapperIovaIsTheAddress) {
    env::dma_region r(4096, "test");
    EXPECT_EQ(r.bytes(), env::hugepage_size);  // whole hugepages
    EXPECT_EQ(r.iova(r.data() + 100), reinterpret_cast<uint64_t>(r.data() + 100));
}

TEST(Dma, RegionsBeforeAndAfterTheMapperAreMapped) {
    env::dma_region before(3 * env::hugepage_size, "before");
    fake_mapper m(false);
    {
        mapper_guard g(&m);
        EXPECT_EQ(m.mapped.count(before.data()), 1u);
        EXPECT_EQ(before.iova(before.data()), 1ull << 30);
        EXPECT_EQ(before.iova(before.data() + 12345), (1ull << 30) + 12345);
        {
            env::dma_pool pool(1 << 20);  // a reactor's pool made after the container opened
            iovec c;
            ASSERT_TRUE(pool.get(1, &c));
            EXPECT_EQ(pool.iova(c.iov_base), (1ull << 30) + 3 * env::hugepage_size +
                                                 (static_cast<uint8_t*>(c.iov_base) - pool.region().data()));
            EXPECT_EQ(m.mapped.size(), 2u);
            pool.put(&c, 1);
        }
        EXPECT_EQ(m.mapped.size(), 1u);  // the pool's region was unmapped when it went away
    }
    EXPECT_TRUE(m.mapped.empty());  // removing the mapper unmaps everything
    EXPECT_EQ(before.iova(before.data()), reinterpret_cast<uint64_t>(before.data()));
}

TEST(Dma, NoIommuTranslatesPerHugepage) {
    fake_mapper m(true);
    mapper_guard g(&m);
    env::dma_region r(2 * env::hugepage_size, "noiommu");
    EXPECT_EQ(r.iova(r.data() + 8), 0x80000000ull + 2 * env::hugepage_size + 8);
    EXPECT_EQ(r.iova(r.data() + env::hugepage_size + 8), 0x80000000ull + env::hugepage_size + 8);
}

TEST(Dma, AMapperThatFailsIsNotInstalled) {
    env::dma_region r(4096, "test");
    fake_mapper m(false);
    m.fail_next = true;
    EXPECT_THROW(env::dma_space::set_mapper(&m), std::runtime_error);
    EXPECT_FALSE(env::dma_space::has_mapper());
    EXPECT_EQ(r.iova(r.data()), reinterpret_cast<uint64_t>(r.data()));
    // A region the mapper refuses is not created at all.
    mapper_guard g(&m);
    m.fail_next = true;
    EXPECT_THROW(env::dma_region(4096, "refused"), std::runtime_error);
}

}  // namespace
}  // namespace ferry
