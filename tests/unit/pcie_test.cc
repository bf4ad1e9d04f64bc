// The user-space PCIe NVMe driver: PRP construction, ring wrap-around and phase handling,
// and the controller and store against a software model of the device (nvme_model.hh).
#include "nvme/pcie.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "env/dma.hh"
#include "env/dma_pool.hh"
#include "env/thread.hh"
#include "nvme/block_queue.hh"
#include "nvme/prp.hh"
#include "tests/unit/nvme_model.hh"

namespace ferry {
namespace {

using nvme::dma_segment;
using nvme::prp_list_page;

// ---------------------------------------------------------------- PRPs

struct list_pages {
    explicit list_pages(size_t n) : mem(n * 4096 + 4096) {
        auto base = (reinterpret_cast<uintptr_t>(mem.data()) + 4095) & ~uintptr_t{4095};
        for (size_t i = 0; i < n; ++i) {
            auto* p = reinterpret_cast<uint64_t*>(base + i * 4096);
            pages.push_back({p, 0xA0000000ull + i * 0x1000});  // device addresses of the lists
        }
    }
    std::vector<uint8_t> mem;
    std::vector<prp_list_page> pages;
};

TEST(Prp, SinglePageNeedsNoPrp2) {
    list_pages l(1);
    uint64_t p1, p2;
    dma_segment s{0x10000200, 0xE00};  // up to the page end
    ASSERT_TRUE(nvme::build_prps({&s, 1}, 4096, l.pages, p1, p2));
    EXPECT_EQ(p1, 0x10000200u);
    EXPECT_EQ(p2, 0u);
}

TEST(Prp, TwoPagesUseDirectPrp2) {  // reference example C, aligned
    list_pages l(1);
    uint64_t p1, p2;
    dma_segment s{0x10000000, 8192};
    ASSERT_TRUE(nvme::build_prps({&s, 1}, 4096, l.pages, p1, p2));
    EXPECT_EQ(p1, 0x10000000u);
    EXPECT_EQ(p2, 0x10001000u);
}

TEST(Prp, EightKiBAtAnOffsetNeedsAList) {  // reference example C, offset 0x200: 3 pages
    list_pages l(1);
    uint64_t p1, p2;
    dma_segment s{0x10000200, 8192};
    ASSERT_TRUE(nvme::build_prps({&s, 1}, 4096, l.pages, p1, p2));
    EXPECT_EQ(p1, 0x10000200u);
    EXPECT_EQ(p2, l.pages[0].iova);
    EXPECT_EQ(l.pages[0].entries[0], 0x10001000u);
    EXPECT_EQ(l.pages[0].entries[1], 0x10002000u);
}

TEST(Prp, AlignedList128KiB) {  // reference example A
    list_pages l(1);
    uint64_t p1, p2;
    dma_segment s{0x10000000, 128 << 10};
    ASSERT_TRUE(nvme::build_prps({&s, 1}, 4096, l.pages, p1, p2));
    EXPECT_EQ(p1, 0x10000000u);
    EXPECT_EQ(p2, l.pages[0].iova);
    for (unsigned i = 0; i < 31; ++i) EXPECT_EQ(l.pages[0].entries[i], 0x10001000u + i * 0x1000) << i;
}

TEST(Prp, OffsetList128KiB) {  // reference example B: 33 pages, the last partly used
    list_pages l(1);
    uint64_t p1, p2;
    dma_segment s{0x10000200, 128 << 10};
    ASSERT_TRUE(nvme::build_prps({&s, 1}, 4096, l.pages, p1, p2));
    EXPECT_EQ(p1, 0x10000200u);
    for (unsigned i = 0; i < 32; ++i) EXPECT_EQ(l.pages[0].entries[i], 0x10001000u + i * 0x1000) << i;
}

TEST(Prp, ChainsListPagesFor4MiB) {  // reference example D
    list_pages l(2);
    uint64_t p1, p2;
    dma_segment s{0x20000000, 4u << 20};
    ASSERT_TRUE(nvme::build_prps({&s, 1}, 4096, l.pages, p1, p2));
    EXPECT_EQ(p1, 0x20000000u);
    EXPECT_EQ(p2, l.pages[0].iova);
    for (unsigned i = 0; i < 511; ++i) ASSERT_EQ(l.pages[0].entries[i], 0x20001000u + i * 0x1000) << i;
    EXPECT_EQ(l.pages[0].entries[511], l.pages[1].iova);  // chain pointer
    for (unsigned i = 0; i < 512; ++i) ASSERT_EQ(l.pages[1].entries[i], 0x20000000u + (512 + i) * 0x1000ull) << i;
}

TEST(Prp, FullListPageWithoutChain) {  // 513 pages: 512 list entries fill one page exactly
    list_pages l(1);
    uint64_t p1, p2;
    dma_segment s{0x20000000, 513 * 4096};
    ASSERT_TRUE(nvme::build_prps({&s, 1}, 4096, l.pages, p1, p2));
    EXPECT_EQ(l.pages[0].entries[511], 0x20000000u + 512 * 0x1000ull);
    s.len += 4096;  // one more page needs a second list page
    EXPECT_FALSE(nvme::build_prps({&s, 1}, 4096, l.pages, p1, p2));
}

TEST(Prp, ScatteredChunksLikeThePool) {
    list_pages l(1);
    uint64_t p1, p2;
    // Three 8 KiB pool chunks, not adjacent, the last one partly used.
    dma_segment segs[] = {{0x30004000, 8192}, {0x30010000, 8192}, {0x30002000, 512}};
    ASSERT_TRUE(nvme::build_prps(segs, 4096, l.pages, p1, p2));
    EXPECT_EQ(p1, 0x30004000u);
    uint64_t want[] = {0x30005000, 0x30010000, 0x30011000, 0x30002000};
    for (unsigned i = 0; i < 4; ++i) EXPECT_EQ(l.pages[0].entries[i], want[i]) << i;
}

TEST(Prp, RejectsWhatPrpsCannotExpress) {
    list_pages l(1);
    uint64_t p1, p2;
    dma_segment odd{0x10000002, 512};  // not dword aligned
    EXPECT_FALSE(nvme::build_prps({&odd, 1}, 4096, l.pages, p1, p2));
    dma_segment hole[] = {{0x10000000, 4096}, {0x10005200, 4096}};  // later piece not page aligned
    EXPECT_FALSE(nvme::build_prps(hole, 4096, l.pages, p1, p2));
    dma_segment short_first[] = {{0x10000000, 2048}, {0x10005000, 4096}};  // earlier piece ends mid-page
    EXPECT_FALSE(nvme::build_prps(short_first, 4096, l.pages, p1, p2));
    dma_segment big{0x10000000, 4u << 20};  // needs two list pages, has one
    EXPECT_FALSE(nvme::build_prps({&big, 1}, 4096, l.pages, p1, p2));
    EXPECT_TRUE(nvme::build_prps({}, 4096, l.pages, p1, p2));  // no data
    EXPECT_EQ(p1, 0u);
}

// ---------------------------------------------------------------- ring mechanics

TEST(QueuePair, WrapsAndFlipsPhase) {
    constexpr uint16_t n = 4;
    std::vector<nvme::sqe> sq(n);
    std::vector<nvme::cqe> cq(n);
    uint32_t sq_db = 0xdead, cq_db = 0xdead;
    nvme::queue_pair qp(1, n, sq.data(), cq.data(), &sq_db, &cq_db);
    uint16_t dev_tail = 0, dev_phase = 1, dev_sq_head = 0;
    std::vector<uint16_t> seen;
    for (uint16_t round = 0; round < 10; ++round) {
        // Fill the ring: n - 1 commands fit, one slot stays empty.
        uint16_t pushed = 0;
        while (!qp.full()) {
            nvme::sqe c{};
            c.cid = static_cast<uint16_t>(round * 10 + pushed++);
            qp.push(c);
        }
        ASSERT_EQ(pushed, n - 1);
        qp.ring();
        EXPECT_EQ(sq_db, (round * (n - 1u) + n - 1u) % n);
        // The "device" consumes them and posts completions with the current phase.
        for (uint16_t i = 0; i < pushed; ++i) {
            dev_sq_head = static_cast<uint16_t>((dev_sq_head + 1) % n);
            nvme::cqe e{};
            e.cid = sq[(dev_sq_head + n - 1) % n].cid;
            e.sqhd = dev_sq_head;
            e.status = dev_phase;
            cq[dev_tail] = e;
            if (++dev_tail == n) {
                dev_tail = 0;
                dev_phase ^= 1;
            }
        }
        seen.clear();
        unsigned got = qp.reap([&](const nvme::cqe& e) { seen.push_back(e.cid); });
        ASSERT_EQ(got, pushed) << "round " << round;
        for (uint16_t i = 0; i < pushed; ++i) EXPECT_EQ(seen[i], round * 10 + i);
        EXPECT_EQ(cq_db, dev_tail);
        EXPECT_EQ(qp.reap([](const nvme::cqe&) {}), 0u);  // stale entries of the old phase are not new
    }
}

// ---------------------------------------------------------------- controller on the model

struct model_controller {
    explicit model_controller(test::nvme_model::params p = {}, nvme::pcie_controller_options o = {}) {
        auto m = std::make_unique<test::nvme_model>(p);
        model = m.get();
        o.health_interval_ms = 10;
        ctrl = std::make_shared<nvme::pcie_controller>("model", std::move(m), o);
        ctrl->start();
    }
    test::nvme_model* model;
    std::shared_ptr<nvme::pcie_controller> ctrl;
};

struct recorder final : nvme::io_completion {
    void complete(uint16_t s) override {
        status = s;
        ++calls;
    }
    uint16_t status = 0xFFFF;
    unsigned calls = 0;
};

nvme::sqe rw(uint8_t opc, uint64_t slba, uint32_t nlb) {
    nvme::sqe c{};
    c.opcode = opc;
    c.nsid = 7;  // the host's NSID; the store substitutes the device's
    c.cdw10 = static_cast<uint32_t>(slba);
    c.cdw11 = static_cast<uint32_t>(slba >> 32);
    c.cdw12 = nlb - 1;
    return c;
}

// Submits and polls until done (or 5 s).
uint16_t run(nvme::block_queue& q, const nvme::sqe& c, std::span<const iovec> data) {
    recorder r;
    q.submit(c, data, r);
    const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
    while (r.calls == 0 && env::now_ns() < deadline) q.poll();
    return r.calls == 1 ? r.status : 0xEEEE;
}

// Polls a new queue until its hardware queue exists (the admin thread creates it).
void wait_ready(nvme::block_queue& q) {
    const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
    std::string why;
    auto st = q.setup(why);
    while (st == nvme::block_queue::setup_state::pending && env::now_ns() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        st = q.setup(why);
    }
    if (st != nvme::block_queue::setup_state::ready) throw std::runtime_error("queue not set up: " + why);
}

// Closes a queue and polls it until its device has let go of it; false after 5 s.
bool close_and_release(nvme::block_queue& q) {
    q.close();
    const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
    while (!q.released() && env::now_ns() < deadline) {
        q.poll();
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return q.released();
}

TEST(PcieController, StartsIdentifiesAndShutsDown) {
    test::nvme_model* model;
    {
        model_controller m;
        model = m.model;
        EXPECT_EQ(m.ctrl->max_transfer_bytes(), 128u << 10);  // MDTS 5
        EXPECT_EQ(m.ctrl->io_queues_granted(), 4);
        EXPECT_EQ(m.ctrl->max_queue_entries(), 64);
        auto ns = m.ctrl->namespace_info(1);
        EXPECT_EQ(ns.blocks, 4096u);
        EXPECT_EQ(ns.block_size, 4096u);
        EXPECT_EQ(m.ctrl->namespace_info(2).blocks, 0u);
    }
    (void)model;  // destroyed with the controller; the shutdown is checked below
}

TEST(PcieController, ShutdownSetsShnAndWaits) {
    auto m = std::make_unique<test::nvme_model>();
    auto* model = m.get();
    nvme::pcie_controller c("model", std::move(m));
    c.start();
    EXPECT_EQ(model->shutdowns.load(), 0u);
    c.shutdown();
    EXPECT_EQ(model->shutdowns.load(), 1u);
}

// Waits (test thread only) for an admin-thread job to be answered; true if it succeeded.
bool wait_op(const std::shared_ptr<nvme::admin_op>& op, uint64_t timeout_ms = 5000) {
    const uint64_t deadline = env::now_ns() + timeout_ms * 1000000;
    while (!op->done() && env::now_ns() < deadline) std::this_thread::sleep_for(std::chrono::microseconds(100));
    return op->done() && op->ok();
}

std::shared_ptr<nvme::hw_queue> create_now(nvme::pcie_controller& c, uint16_t entries) {
    std::shared_ptr<nvme::admin_op> op;
    auto q = c.create_queue(entries, op);
    if (!wait_op(op)) throw std::runtime_error("creation failed: " + op->error());
    return q;
}

void delete_now(std::shared_ptr<nvme::hw_queue>& q) {
    auto op = q->begin_delete();
    q.reset();
    EXPECT_TRUE(wait_op(op));
}

TEST(PcieController, ShutdownThatDoesNotCompleteDisablesTheController) {
    auto m = std::make_unique<test::nvme_model>();
    auto* model = m.get();
    nvme::pcie_controller_options o;
    o.shutdown_min_ms = 100;
    nvme::pcie_controller c("model", std::move(m), o);
    c.start();
    model->ignore_shutdown = true;
    EXPECT_TRUE(model->enabled());
    c.shutdown();
    // Queue and buffer memory is freed next: the device must not be left running.
    EXPECT_FALSE(model->enabled());
    EXPECT_EQ(model->disables.load(), 1u);
}

TEST(PcieController, OneHardwareQueuePerOwnerUntilNoneLeft) {
    model_controller m;
    std::vector<std::shared_ptr<nvme::hw_queue>> qs;
    for (int i = 0; i < 4; ++i) qs.push_back(create_now(*m.ctrl, 16));
    std::set<uint16_t> qids;
    for (auto& q : qs) qids.insert(q->qid());
    EXPECT_EQ(qids, (std::set<uint16_t>{1, 2, 3, 4}));
    EXPECT_EQ(m.model->live_io_queues(), 4u);
    try {
        std::shared_ptr<nvme::admin_op> op;
        m.ctrl->create_queue(16, op);
        FAIL() << "a fifth queue was created";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("no hardware I/O queue left"), std::string::npos) << e.what();
    }
    delete_now(qs[1]);  // qid 2 is deleted on the device and can be had again
    EXPECT_EQ(m.model->live_io_queues(), 3u);
    auto again = create_now(*m.ctrl, 16);
    EXPECT_EQ(again->qid(), 2);
    for (auto& q : qs)
        if (q) delete_now(q);
    delete_now(again);
    EXPECT_EQ(m.model->live_io_queues(), 0u);
}

class PcieStore : public ::testing::Test {
protected:
    void SetUp() override {
        store = nvme::make_pcie_store(m.ctrl, 1);
        q = store->create_queue(8, &pool, nullptr);
        wait_ready(*q);
    }
    model_controller m;
    env::dma_pool pool{4 << 20};
    std::unique_ptr<nvme::block_store> store;
    std::unique_ptr<nvme::block_queue> q;
};

TEST_F(PcieStore, GeometryFromTheDevice) {
    EXPECT_EQ(store->block_count(), 4096u);
    EXPECT_EQ(store->block_size(), 4096u);
    EXPECT_EQ(store->max_transfer_bytes(), 128u << 10);
    EXPECT_NE(q->describe().find("hardware queue 1 of model"), std::string::npos) << q->describe();
}

TEST(PcieStoreHealth, SmartLogReadAtStartAndRefreshed) {
    auto m = std::make_unique<test::nvme_model>();
    auto* model = m.get();
    nvme::device_health h;
    h.critical_warning = 0x02;
    h.temperature_kelvin = 313;
    h.available_spare = 97;
    h.available_spare_threshold = 10;
    h.percentage_used = 3;
    h.media_errors = 0x1'0000'0005ull;
    h.error_log_entries = 42;
    model->set_smart(h);
    nvme::pcie_controller_options o;
    o.smart_interval_ms = 20;
    auto ctrl = std::make_shared<nvme::pcie_controller>("model", std::move(m), o);
    ctrl->start();
    auto store = nvme::make_pcie_store(ctrl, 1);
    auto got = store->health();  // read during start: there at once
    ASSERT_TRUE(got);
    EXPECT_EQ(got->critical_warning, 0x02);
    EXPECT_EQ(got->temperature_kelvin, 313);
    EXPECT_EQ(got->available_spare, 97);
    EXPECT_EQ(got->available_spare_threshold, 10);
    EXPECT_EQ(got->percentage_used, 3);
    EXPECT_EQ(got->media_errors, 0x1'0000'0005ull);
    EXPECT_EQ(got->error_log_entries, 42u);
    // The SSD warms up: the cached copy follows within a refresh interval or so.
    h.temperature_kelvin = 350;
    h.media_errors = 6;
    model->set_smart(h);
    const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
    while (store->health()->temperature_kelvin != 350 && env::now_ns() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ(store->health()->temperature_kelvin, 350);
    EXPECT_EQ(store->health()->media_errors, 6u);
    EXPECT_FALSE(nvme::make_ram_store(8, 4096)->health());  // software stores report none
}

TEST(PcieStoreIdentify, OptionalCommandsAndDeallocationFromTheDevice) {
    test::nvme_model::params p;
    p.oncs = 0x08 | 0x10;  // Write Zeroes, Save/Select (not ours to offer)
    p.dlfeat = 0x01;       // deallocated blocks read as zeroes, nothing more
    model_controller m(p);
    auto store = nvme::make_pcie_store(m.ctrl, 1);
    EXPECT_EQ(store->optional_commands(), 0x08);
    EXPECT_EQ(store->deallocate_features(), 0x01);
    EXPECT_EQ(nvme::make_ram_store(8, 4096)->optional_commands(), 0x0D);
}

TEST_F(PcieStore, WriteAndReadThroughScatteredPoolChunks) {
    // 128 KiB (the device's MDTS) in 16 pool chunks taken in an order that is not contiguous.
    std::vector<iovec> chunks(16), spare(3);
    ASSERT_TRUE(pool.get(3, spare.data()));
    ASSERT_TRUE(pool.get(16, chunks.data()));
    pool.put(spare.data(), 3);
    for (unsigned i = 0; i < 16; ++i)
        for (size_t b = 0; b < env::dma_pool::chunk_size; ++b)
            static_cast<uint8_t*>(chunks[i].iov_base)[b] = static_cast<uint8_t>(i * 31 + b * 7);
    ASSERT_EQ(run(*q, rw(nvme::io_opc::write, 100, 32), chunks), nvme::sc::success);
    // On the medium, byte for byte, at LBA 100.
    for (unsigned i = 0; i < 16; ++i)
        ASSERT_EQ(std::memcmp(m.model->media() + (100 + 2 * i) * 4096ull, chunks[i].iov_base, 8192), 0) << i;
    std::vector<iovec> back(16);
    ASSERT_TRUE(pool.get(16, back.data()));
    for (auto& v : back) std::memset(v.iov_base, 0, v.iov_len);
    ASSERT_EQ(run(*q, rw(nvme::io_opc::read, 100, 32), back), nvme::sc::success);
    for (unsigned i = 0; i < 16; ++i) EXPECT_EQ(std::memcmp(back[i].iov_base, chunks[i].iov_base, 8192), 0) << i;
    pool.put(chunks.data(), 16);
    pool.put(back.data(), 16);
}

TEST(PcieStoreLarge, OneMiBIn128ChunksUsesAPrpList) {
    test::nvme_model::params p;
    p.mdts = 8;  // 1 MiB, the transport's limit
    model_controller m(p);
    env::dma_pool pool(4 << 20);
    auto store = nvme::make_pcie_store(m.ctrl, 1);
    EXPECT_EQ(store->max_transfer_bytes(), 1u << 20);
    auto q = store->create_queue(4, &pool, nullptr);
    wait_ready(*q);
    std::vector<iovec> chunks(128);
    ASSERT_TRUE(pool.get(128, chunks.data()));
    for (unsigned i = 0; i < 128; ++i) std::memset(chunks[i].iov_base, static_cast<int>(i + 1), 8192);
    ASSERT_EQ(run(*q, rw(nvme::io_opc::write, 0, 256), chunks), nvme::sc::success);
    for (unsigned i = 0; i < 128; ++i) {
        const uint8_t* m0 = m.model->media() + i * 8192ull;
        ASSERT_TRUE(std::all_of(m0, m0 + 8192, [&](uint8_t b) { return b == i + 1; })) << "chunk " << i;
    }
    pool.put(chunks.data(), 128);
}

TEST(PcieStoreShared, NamespacesOfOneSsdShareTheHostQueuesHardwareQueue) {
    test::nvme_model::params p;
    p.namespaces = 2;
    model_controller m(p);
    env::dma_pool pool(1 << 20);
    auto ns1 = nvme::make_pcie_store(m.ctrl, 1), ns2 = nvme::make_pcie_store(m.ctrl, 2);
    std::unique_ptr<nvme::block_queue> q1, q2;
    {
        nvme::queue_group group;  // what the target makes for one host queue's Connect
        q1 = ns1->create_queue(8, &pool, &group);
        q2 = ns2->create_queue(8, &pool, &group);
    }
    wait_ready(*q1);
    wait_ready(*q2);
    EXPECT_EQ(m.model->live_io_queues(), 1u);
    EXPECT_EQ(q1->describe(), q2->describe());
    iovec b[2];
    ASSERT_TRUE(pool.get(2, b));
    std::memset(b[0].iov_base, 0x11, 4096);
    std::memset(b[1].iov_base, 0x22, 4096);
    iovec one{b[0].iov_base, 4096}, two{b[1].iov_base, 4096};
    ASSERT_EQ(run(*q1, rw(nvme::io_opc::write, 3, 1), {&one, 1}), nvme::sc::success);
    ASSERT_EQ(run(*q2, rw(nvme::io_opc::write, 3, 1), {&two, 1}), nvme::sc::success);
    // Each command reached its own namespace on the device.
    EXPECT_EQ(m.model->media(1)[3 * 4096], 0x11);
    EXPECT_EQ(m.model->media(2)[3 * 4096], 0x22);
    // Another host queue (another group) gets a hardware queue of its own.
    nvme::queue_group other;
    auto q3 = ns1->create_queue(8, &pool, &other);
    other = {};
    wait_ready(*q3);
    EXPECT_EQ(m.model->live_io_queues(), 2u);
    EXPECT_NE(q3->describe(), q1->describe());
    q1.reset();
    EXPECT_EQ(m.model->live_io_queues(), 2u);  // still used by namespace 2's queue
    ASSERT_TRUE(close_and_release(*q2));
    EXPECT_EQ(m.model->live_io_queues(), 1u);
    q2.reset();
    ASSERT_TRUE(close_and_release(*q3));
    EXPECT_EQ(m.model->live_io_queues(), 0u);
    pool.put(b, 2);
}

TEST_F(PcieStore, ManyCommandsWrapTheRings) {
    // Depth 8 on a 9-entry ring; 200 commands wrap SQ and CQ many times (phase flips).
    iovec buf[8];
    ASSERT_TRUE(pool.get(8, buf));
    recorder r[8];
    unsigned done = 0;
    for (unsigned round = 0; round < 25; ++round) {
        for (unsigned i = 0; i < 8; ++i) {
            auto* p = static_cast<uint32_t*>(buf[i].iov_base);
            p[0] = round * 8 + i;
            iovec one{buf[i].iov_base, 4096};
            q->submit(rw(nvme::io_opc::write, round * 8 + i, 1), {&one, 1}, r[i]);
        }
        EXPECT_EQ(q->in_flight(), 8u);
        const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
        while (q->in_flight() > 0 && env::now_ns() < deadline) done += q->poll();
        ASSERT_EQ(q->in_flight(), 0u) << "round " << round;
        for (auto& x : r) ASSERT_EQ(x.status, nvme::sc::success);
    }
    EXPECT_EQ(done, 200u);
    for (unsigned lba = 0; lba < 200; ++lba) {
        uint32_t v;
        std::memcpy(&v, m.model->media() + lba * 4096ull, 4);
        ASSERT_EQ(v, lba);
    }
    pool.put(buf, 8);
}

TEST_F(PcieStore, DeviceErrorsReachTheHost) {
    iovec b;
    ASSERT_TRUE(pool.get(1, &b));
    iovec one{b.iov_base, 4096};
    EXPECT_EQ(run(*q, rw(nvme::io_opc::read, 4096, 1), {&one, 1}), nvme::sc::lba_out_of_range);
    // A buffer the device cannot be given (not from the pool) is refused, not sent.
    std::vector<uint8_t> heap(4096);
    iovec foreign{heap.data(), 4096};
    EXPECT_EQ(run(*q, rw(nvme::io_opc::write, 0, 1), {&foreign, 1}), nvme::sc::internal_error | nvme::status_dnr);
    pool.put(&b, 1);
}

TEST_F(PcieStore, QueueDeletedOnTheDeviceWhenClosed) {
    EXPECT_EQ(m.model->live_io_queues(), 1u);
    ASSERT_TRUE(close_and_release(*q));
    EXPECT_EQ(m.model->live_io_queues(), 0u);
}

TEST_F(PcieStore, QueueDroppedWithoutCloseIsStillDeletedOnTheDevice) {
    EXPECT_EQ(m.model->live_io_queues(), 1u);
    q.reset();  // the admin thread's deletion job keeps the queue's memory meanwhile
    const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
    while (m.model->live_io_queues() != 0 && env::now_ns() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(m.model->live_io_queues(), 0u);
}

// A depth-4 queue on a model controller and one 4 KiB pool buffer (`one`) to send.
struct one_block_queue {
    explicit one_block_queue(nvme::pcie_controller_options o = {}) : m({}, o) {
        store = nvme::make_pcie_store(m.ctrl, 1);
        q = store->create_queue(4, &pool, nullptr);
        wait_ready(*q);
        if (!pool.get(1, &chunk)) throw std::runtime_error("pool empty");
        one = {chunk.iov_base, 4096};
    }
    ~one_block_queue() {
        q.reset();
        pool.put(&chunk, 1);
    }
    std::span<const iovec> data() const { return {&one, 1}; }

    model_controller m;
    env::dma_pool pool{1 << 20};
    std::unique_ptr<nvme::block_store> store;
    std::unique_ptr<nvme::block_queue> q;
    iovec chunk{}, one{};
};

TEST(PcieRecovery, TimeoutAbortsThenResetsAndTheQueueRecovers) {
    nvme::pcie_controller_options o;
    o.io_timeout_ms = 50;
    one_block_queue t(o);
    t.m.model->drop_io = true;
    recorder r;
    t.q->submit(rw(nvme::io_opc::write, 0, 1), t.data(), r);
    const uint64_t deadline = env::now_ns() + 10'000'000'000ull;
    while (r.calls == 0 && env::now_ns() < deadline) {
        t.q->poll();
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    ASSERT_EQ(r.calls, 1u) << "the lost command was never failed";
    EXPECT_EQ(r.status, nvme::sc::controller_path_error);
    EXPECT_GE(t.m.model->aborts.load(), 1u);
    EXPECT_GE(t.m.model->disables.load(), 1u);  // the controller was reset
    // The device behaves again: the queue is re-created and works.
    t.m.model->drop_io = false;
    const uint64_t d2 = env::now_ns() + 5'000'000'000ull;
    uint16_t st = 0xEEEE;
    while (env::now_ns() < d2 && (st = run(*t.q, rw(nvme::io_opc::write, 0, 1), t.data())) != nvme::sc::success)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(st, nvme::sc::success);
}

TEST(PcieTeardown, ChannelFreedWithCommandsInFlightResetsTheControllerFirst) {
    one_block_queue t;
    t.m.model->drop_io = true;  // the device holds the command (and its buffer) forever
    recorder r;
    t.q->submit(rw(nvme::io_opc::read, 0, 1), t.data(), r);
    t.q->poll();
    EXPECT_EQ(t.m.model->disables.load(), 0u);
    t.q.reset();  // the owner gives up (ferryd stopping): the buffer is about to be freed
    EXPECT_GE(t.m.model->disables.load(), 1u) << "buffer freed while the device could still write it";
    EXPECT_EQ(r.calls, 1u);
    EXPECT_EQ(r.status & 0x7FF, nvme::sc::controller_path_error);
}

TEST(PcieTeardown, FailedDeletionResetsTheController) {
    one_block_queue t;
    t.m.model->fail_delete = true;
    ASSERT_TRUE(close_and_release(*t.q));
    // The device refused to delete the queue, so it may still use the queue's memory: the
    // controller was reset before the queue reported itself released.
    EXPECT_GE(t.m.model->disables.load(), 1u);
    EXPECT_EQ(t.m.model->live_io_queues(), 0u);
}

TEST(PcieRecovery, FatalStatusResetsTheController) {
    one_block_queue t;
    ASSERT_EQ(run(*t.q, rw(nvme::io_opc::write, 1, 1), t.data()), nvme::sc::success);
    const uint32_t gen = t.m.ctrl->generation();
    t.m.model->raise_fatal();
    const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
    while ((t.m.ctrl->generation() == gen || t.m.ctrl->state() != nvme::controller_state::live) &&
           env::now_ns() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_EQ(t.m.ctrl->state(), nvme::controller_state::live);
    EXPECT_GE(t.m.model->disables.load(), 1u);
    // The first command after the reset asks the admin thread to re-create the hardware queue
    // and fails at once with a path error the host retries (no DNR); then the queue resumes.
    EXPECT_EQ(run(*t.q, rw(nvme::io_opc::write, 1, 1), t.data()), nvme::sc::controller_path_error);
    const uint64_t d2 = env::now_ns() + 5'000'000'000ull;
    uint16_t st = 0xEEEE;
    unsigned tries = 0;
    while (env::now_ns() < d2 && (st = run(*t.q, rw(nvme::io_opc::write, 1, 1), t.data())) != nvme::sc::success) {
        EXPECT_EQ(st, nvme::sc::controller_path_error);
        ++tries;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(st, nvme::sc::success) << "after " << tries << " retries";
}

TEST(PcieRecovery, SurpriseRemovalFailsCommandsWithAPathError) {
    one_block_queue t;
    t.m.model->drop_io = true;  // in flight when the device disappears
    recorder r;
    t.q->submit(rw(nvme::io_opc::read, 0, 1), t.data(), r);
    t.q->poll();
    t.m.model->vanish();
    const uint64_t deadline = env::now_ns() + 5'000'000'000ull;
    while (r.calls == 0 && env::now_ns() < deadline) t.q->poll();
    ASSERT_EQ(r.calls, 1u);
    // A path error, final (DNR): the device will not come back.
    EXPECT_EQ(r.status, nvme::sc::controller_path_error | nvme::status_dnr);
    EXPECT_EQ(t.m.ctrl->state(), nvme::controller_state::gone);
    // New commands fail at once; nothing waits on the dead device.
    EXPECT_EQ(run(*t.q, rw(nvme::io_opc::read, 0, 1), t.data()), nvme::sc::controller_path_error | nvme::status_dnr);
    t.q.reset();  // no hang on deletion either
}

}  // namespace
}  // namespace ferry
