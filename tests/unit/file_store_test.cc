// The io_uring file store: directly, and behind the whole target (data survives a restart).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "env/dma_pool.hh"
#include "nvme/block_queue.hh"
#include "test_host.hh"

using namespace ferry;
using namespace ferry::test;

namespace {
struct temp_file {
    std::string path;
    explicit temp_file(const std::string& dir = "/var/tmp") {
        std::string tmpl = dir + "/ferry-file-store-XXXXXX";
        int fd = ::mkstemp(tmpl.data());
        ::close(fd);
        path = tmpl;
    }
    ~temp_file() { std::filesystem::remove(path); }
};

// Polls `q` until `w` has its completion (disk I/O: allows real time, up to 10 s).
void poll_until_done(nvme::block_queue& q, const completion_recorder& w) {
    const uint64_t deadline = env::now_ns() + 10'000'000'000ull;
    while (w.calls == 0 && env::now_ns() < deadline) q.poll();
}

uint16_t run(nvme::block_queue& q, const nvme::sqe& c, std::span<const iovec> data) {
    completion_recorder w;
    q.submit(c, data, w);
    poll_until_done(q, w);
    EXPECT_EQ(w.calls, 1);
    EXPECT_EQ(q.in_flight(), 0u);
    return w.status;
}

nvme::sqe io(uint8_t opc, uint64_t slba, uint32_t nlb) { return io_command(opc, 1, slba, nlb); }
}  // namespace

TEST(file_store, creates_extends_and_does_io) {
    temp_file f;
    auto store = nvme::make_file_store(f.path, 4096, 8u << 20);
    EXPECT_EQ(store->block_count(), (8u << 20) / 4096);
    EXPECT_EQ(std::filesystem::file_size(f.path), 8u << 20);
    auto q = store->create_queue(8, nullptr, nullptr);
    alignas(4096) static uint8_t a[8192], b[8192];
    auto d = pattern(8192, 3);
    std::memcpy(a, d.data(), sizeof(a));
    iovec wv{a, sizeof(a)}, rv{b, sizeof(b)};
    EXPECT_EQ(run(*q, io(nvme::io_opc::write, 5, 2), {&wv, 1}), 0);
    EXPECT_EQ(run(*q, io(nvme::io_opc::flush, 0, 1), {}), 0);
    EXPECT_EQ(run(*q, io(nvme::io_opc::read, 5, 2), {&rv, 1}), 0);
    EXPECT_EQ(std::memcmp(a, b, sizeof(a)), 0);
    EXPECT_EQ(run(*q, io(nvme::io_opc::compare, 5, 2), {&wv, 1}), 0);
    a[100] ^= 1;
    EXPECT_EQ(run(*q, io(nvme::io_opc::compare, 5, 2), {&wv, 1}), nvme::sc::compare_failure | nvme::status_dnr);
    EXPECT_EQ(run(*q, io(nvme::io_opc::write_zeroes, 6, 1), {}), 0);
    EXPECT_EQ(run(*q, io(nvme::io_opc::read, 5, 2), {&rv, 1}), 0);
    EXPECT_TRUE(std::all_of(b + 4096, b + 8192, [](uint8_t x) { return x == 0; }));
    EXPECT_EQ(b[1], d[1]);
    // The bytes are in the file at LBA * 4096.
    std::ifstream in(f.path, std::ios::binary);
    in.seekg(5 * 4096);
    std::vector<uint8_t> on_disk(4096);
    in.read(reinterpret_cast<char*>(on_disk.data()), 4096);
    EXPECT_TRUE(std::equal(on_disk.begin(), on_disk.end(), d.begin()));
}

// Write Zeroes (with FUA) and Deallocate run as io_uring operations completed from poll(), not
// inside submit() on the reactor (they were fallocate or a pwrite loop there: a large range on a
// device without zeroing offload held the reactor while it wrote). On ext4 (/var/tmp) with
// FALLOC_FL_ZERO_RANGE; on tmpfs (/dev/shm), which refuses it, by punching holes.
TEST(file_store, write_zeroes_and_deallocate_complete_from_poll_not_in_submit) {
    for (const char* dir : {"/var/tmp", "/dev/shm"}) {
        if (!std::filesystem::is_directory(dir)) continue;
        temp_file f(dir);
        auto store = nvme::make_file_store(f.path, 4096, 8u << 20);
        auto q = store->create_queue(8, nullptr, nullptr);
        alignas(4096) static uint8_t a[32 * 4096], b[32 * 4096];
        auto d = pattern(sizeof(a), 11);
        std::memcpy(a, d.data(), sizeof(a));
        iovec wv{a, sizeof(a)}, rv{b, sizeof(b)};
        ASSERT_EQ(run(*q, io(nvme::io_opc::write, 0, 32), {&wv, 1}), 0) << dir;

        auto wz = io(nvme::io_opc::write_zeroes, 4, 4);
        wz.cdw12 |= 1u << 30;  // FUA
        completion_recorder r;
        q->submit(wz, {}, r);
        EXPECT_EQ(r.calls, 0) << dir;
        EXPECT_EQ(q->in_flight(), 1u) << dir;
        poll_until_done(*q, r);
        EXPECT_EQ(r.calls, 1) << dir;
        EXPECT_EQ(r.status, 0) << dir;

        // Three ranges (one empty), the third split over two iovecs.
        struct __attribute__((packed)) {
            uint32_t attr, len;
            uint64_t slba;
        } ranges[3] = {{0, 2, 10}, {0, 0, 20}, {0, 3, 25}};
        auto* rb = reinterpret_cast<uint8_t*>(ranges);
        iovec dv[2] = {{rb, 40}, {rb + 40, 8}};
        nvme::sqe dsm = io(nvme::io_opc::dataset_mgmt, 0, 1);
        dsm.cdw10 = 2;  // three ranges
        dsm.cdw11 = 4;  // AD
        dsm.cdw12 = 0;
        completion_recorder r2;
        q->submit(dsm, dv, r2);
        EXPECT_EQ(r2.calls, 0) << dir;
        poll_until_done(*q, r2);
        EXPECT_EQ(r2.calls, 1) << dir;
        EXPECT_EQ(r2.status, 0) << dir;
        EXPECT_EQ(q->in_flight(), 0u) << dir;

        // Closed (its connection went) with a Write Zeroes under way: the chain stops at its
        // next step and the command ends aborted, not zeroed to the end first.
        {
            auto q2 = store->create_queue(8, nullptr, nullptr);
            completion_recorder r3;
            q2->submit(io(nvme::io_opc::write_zeroes, 100, 64), {}, r3);
            q2->close();
            poll_until_done(*q2, r3);
            EXPECT_EQ(r3.calls, 1) << dir;
            EXPECT_EQ(r3.status, nvme::sc::aborted_sq_deletion) << dir;
            EXPECT_EQ(q2->in_flight(), 0u) << dir;
        }

        ASSERT_EQ(run(*q, io(nvme::io_opc::read, 0, 32), {&rv, 1}), 0) << dir;
        for (unsigned blk = 0; blk < 32; ++blk) {
            const bool zeroed = (blk >= 4 && blk < 8) || (blk >= 10 && blk < 12) || (blk >= 25 && blk < 28);
            const uint8_t* got = b + blk * 4096;
            if (zeroed)
                EXPECT_TRUE(std::all_of(got, got + 4096, [](uint8_t x) { return x == 0; })) << dir << " block " << blk;
            else
                EXPECT_EQ(std::memcmp(got, d.data() + blk * 4096, 4096), 0) << dir << " block " << blk;
        }
    }
}

TEST(file_store, pool_buffers_registered_with_the_ring) {
    temp_file f;
    auto store = nvme::make_file_store(f.path, 4096, 1u << 20);
    env::dma_pool pool(1u << 20);
    auto q = store->create_queue(8, &pool, nullptr);
    EXPECT_EQ(q->describe(), "io_uring with the buffer pool registered");
    iovec c[3];
    ASSERT_TRUE(pool.get(3, c));
    auto d = pattern(3 * 8192, 9);
    for (int i = 0; i < 3; ++i) std::memcpy(c[i].iov_base, d.data() + i * 8192, 8192);
    // One chunk: fixed-buffer write and read. Two chunks: vectored.
    EXPECT_EQ(run(*q, io(nvme::io_opc::write, 0, 2), {&c[0], 1}), 0);
    EXPECT_EQ(run(*q, io(nvme::io_opc::write, 2, 4), {&c[1], 2}), 0);
    for (auto& v : c) std::memset(v.iov_base, 0, 8192);
    EXPECT_EQ(run(*q, io(nvme::io_opc::read, 0, 2), {&c[2], 1}), 0);
    EXPECT_EQ(std::memcmp(c[2].iov_base, d.data(), 8192), 0);
    EXPECT_EQ(run(*q, io(nvme::io_opc::read, 2, 4), {&c[0], 2}), 0);
    EXPECT_EQ(std::memcmp(c[0].iov_base, d.data() + 8192, 8192), 0);
    EXPECT_EQ(std::memcmp(c[1].iov_base, d.data() + 16384, 8192), 0);
    std::ifstream in(f.path, std::ios::binary);
    std::vector<uint8_t> on_disk(3 * 8192);
    in.read(reinterpret_cast<char*>(on_disk.data()), static_cast<std::streamsize>(on_disk.size()));
    EXPECT_EQ(on_disk, d);
    pool.put(c, 3);
}

TEST(file_store, single_chunk_io_goes_through_the_registered_buffer) {
    // Proof that a single pool chunk is read with IORING_OP_READ_FIXED: a registered buffer is
    // pinned at registration, so once the pool's virtual range is mapped to fresh pages, a fixed
    // read still lands in the old pages (the chunk reads as zeroes), while a vectored read goes
    // through the current mapping (the chunk sees the data).
    temp_file f;
    auto store = nvme::make_file_store(f.path, 4096, 1u << 20);
    env::dma_pool pool(1u << 20);
    auto q = store->create_queue(8, &pool, nullptr);
    ASSERT_EQ(q->describe(), "io_uring with the buffer pool registered");
    auto d = pattern(16384, 21);
    alignas(4096) static uint8_t plain[16384];
    std::memcpy(plain, d.data(), sizeof(plain));
    iovec pv{plain, sizeof(plain)};
    ASSERT_EQ(run(*q, io(nvme::io_opc::write, 0, 4), {&pv, 1}), 0);  // not a pool buffer: writev

    iovec c[2];
    ASSERT_TRUE(pool.get(2, c));
    void* base = pool.region().data();
    ASSERT_EQ(
        ::mmap(base, pool.region().bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
        base);
    EXPECT_EQ(run(*q, io(nvme::io_opc::read, 0, 2), {&c[0], 1}), 0);
    EXPECT_TRUE(std::all_of(static_cast<uint8_t*>(c[0].iov_base), static_cast<uint8_t*>(c[0].iov_base) + 8192,
                            [](uint8_t x) { return x == 0; }))
        << "the single-chunk read did not use the registered (fixed) buffer";
    // A fixed write sends the old pages too: what the fixed read put there (d), not 0xAB.
    std::memset(c[0].iov_base, 0xAB, 8192);
    EXPECT_EQ(run(*q, io(nvme::io_opc::write, 8, 2), {&c[0], 1}), 0);
    iovec pv8{plain, 8192};
    EXPECT_EQ(run(*q, io(nvme::io_opc::read, 8, 2), {&pv8, 1}), 0);
    EXPECT_EQ(std::memcmp(plain, d.data(), 8192), 0) << "the single-chunk write did not use the fixed buffer";
    EXPECT_EQ(run(*q, io(nvme::io_opc::read, 0, 4), {c, 2}), 0);  // two chunks: readv
    EXPECT_EQ(std::memcmp(c[0].iov_base, d.data(), 8192), 0);
    EXPECT_EQ(std::memcmp(c[1].iov_base, d.data() + 8192, 8192), 0);
    pool.put(c, 2);
}

TEST(file_store, errors_name_the_path) {
    try {
        nvme::make_file_store("/nonexistent-dir/x.img", 4096, 0);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.img: cannot open"), std::string::npos);
    }
    temp_file f;  // empty file, no size given
    EXPECT_THROW(nvme::make_file_store(f.path, 4096, 0), std::runtime_error);
}

TEST(file_store, data_survives_a_target_restart) {
    temp_file f;
    auto cfg = test_config();
    cfg.subsystems[0].namespaces[0] = {1, target::backend_kind::file, 4u << 20, 4096, std::nullopt, std::nullopt, std::nullopt, f.path, {}, 0, {}};
    auto d = pattern(64 * 1024, 11);
    {
        harness h(cfg);
        association a(h, 5000, 31);
        host_conn &admin = a.admin, &io = a.io;
        EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 100, 16), d, 0, false).status, 0);
        EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::flush, 1, 0, 1)).status, 0);
        auto nsid = admin.identify(nvme::cns::ns, 1);
        EXPECT_EQ(reinterpret_cast<const nvme::identify_ns*>(nsid.data.data())->nsze, (4u << 20) / 4096);
    }
    {
        harness h(cfg);
        association a(h, 5000, 31);
        host_conn& io = a.io;
        auto r = io.cmd(io.rw(nvme::io_opc::read, 1, 100, 16), {}, 64 * 1024);
        EXPECT_EQ(r.status, 0);
        EXPECT_EQ(r.data, d);
    }
}

TEST(file_store, a_failed_read_is_a_media_error_in_smart_and_the_error_log) {
    // A real failure of the real store: the file shrinks under the target, reads beyond its
    // new end come back short and complete with Unrecovered Read Error (SCT 2h).
    temp_file f;
    auto cfg = test_config();
    cfg.subsystems[0].namespaces[0] = {1, target::backend_kind::file, 4u << 20, 4096, std::nullopt, std::nullopt, std::nullopt, f.path, {}, 0, {}};
    harness h(cfg);
    association a(h, 5000, 31);
    host_conn &admin = a.admin, &io = a.io;
    ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 100, 1), pattern(4096, 1)).status, 0);
    ASSERT_EQ(::truncate(f.path.c_str(), 64 * 4096), 0);
    auto bad = io.rw(nvme::io_opc::read, 1, 100, 1);
    EXPECT_EQ(io.cmd(bad, {}, 4096).status, nvme::sc::unrecovered_read_error);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 10, 1), {}, 4096).status, 0);  // below the end: fine

    auto smart = [&](uint32_t nsid) {
        auto lp = admin.make(nvme::admin_opc::get_log_page, nsid);
        lp.cdw10 = nvme::lid::smart | (127u << 16);
        auto r = admin.cmd(lp, {}, 512);
        EXPECT_EQ(r.status, 0);
        uint64_t media, entries, reads;
        std::memcpy(&reads, r.data.data() + 64, 8);
        std::memcpy(&media, r.data.data() + 160, 8);
        std::memcpy(&entries, r.data.data() + 176, 8);
        return std::array<uint64_t, 3>{reads, media, entries};
    };
    for (uint32_t nsid : {1u, 0xFFFFFFFFu}) {
        auto [reads, media, entries] = smart(nsid);
        EXPECT_EQ(reads, 2u) << nsid;
        EXPECT_EQ(media, 1u) << nsid;
        EXPECT_EQ(entries, 1u) << nsid;
    }
    EXPECT_EQ(smart(3)[1], 0u);  // the RAM namespace had none

    auto log = admin.get_log(nvme::lid::error, 64);
    ASSERT_EQ(log.status, 0);
    uint64_t count, lba;
    uint16_t sqid, cid, sf;
    uint32_t nsid;
    std::memcpy(&count, log.data.data(), 8);
    std::memcpy(&sqid, log.data.data() + 8, 2);
    std::memcpy(&cid, log.data.data() + 10, 2);
    std::memcpy(&sf, log.data.data() + 12, 2);
    std::memcpy(&lba, log.data.data() + 16, 8);
    std::memcpy(&nsid, log.data.data() + 24, 4);
    EXPECT_EQ(count, 1u);
    EXPECT_EQ(sqid, 1u);
    EXPECT_EQ(cid, bad.cid);
    EXPECT_EQ(sf, nvme::cqe_status(nvme::sc::unrecovered_read_error));
    EXPECT_EQ(lba, 100u);
    EXPECT_EQ(nsid, 1u);
}
