// Identify, log pages, features, async events and discovery.
#include <gtest/gtest.h>

#include "test_host.hh"

using namespace ferry;
using namespace ferry::test;

namespace {
template <typename T>
T as(const std::vector<uint8_t>& d, size_t off = 0) {
    T v;
    std::memcpy(&v, d.data() + off, sizeof(T));
    return v;
}
}  // namespace

TEST(identify, controller_fields_the_linux_host_checks) {
    harness h;
    host_conn c(h);
    uint16_t id = c.bring_up_admin(open_nqn, host_a);
    auto r = c.identify(nvme::cns::ctrl);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.data.size(), 4096u);
    auto ic = as<nvme::identify_ctrl>(r.data);
    EXPECT_EQ(ic.cntlid, id);
    EXPECT_NE(ic.kas, 0);
    EXPECT_GE(ic.ioccsz, 4u);
    EXPECT_EQ(ic.iorcsz, 1u);
    EXPECT_EQ(ic.icdoff, 0);
    EXPECT_NE(ic.sgls & 3, 0u);
    EXPECT_EQ(ic.cmic & 2, 2);  // several controllers per subsystem
    EXPECT_EQ(ic.cntrltype, 1);
    EXPECT_EQ(ic.mdts, 11);  // 8 MiB
    EXPECT_EQ(ic.maxcmd, target::max_queue_entries);
    EXPECT_EQ(ic.sqes, 0x66);
    EXPECT_EQ(ic.cqes, 0x44);
    EXPECT_EQ(std::string(nvme::fixed_string(ic.subnqn, 256)), open_nqn);
    EXPECT_EQ(ic.ioccsz * 16 - 64, ferry::transport::in_capsule_bytes);
    EXPECT_EQ(ic.oncs & 0x0D, 0x0D);
    EXPECT_EQ(ic.ver, 0x00010400u);
}

TEST(identify, namespaces_and_descriptors) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    auto list = c.identify(nvme::cns::active_ns_list, 0);
    EXPECT_EQ(as<uint32_t>(list.data, 0), 1u);
    EXPECT_EQ(as<uint32_t>(list.data, 4), 3u);
    EXPECT_EQ(as<uint32_t>(list.data, 8), 0u);
    auto after1 = c.identify(nvme::cns::active_ns_list, 1);
    EXPECT_EQ(as<uint32_t>(after1.data, 0), 3u);
    EXPECT_EQ(c.identify(nvme::cns::active_ns_list, 0xFFFFFFFE).status, nvme::sc::invalid_namespace | nvme::status_dnr);

    auto ns1 = as<nvme::identify_ns>(c.identify(nvme::cns::ns, 1).data);
    EXPECT_EQ(ns1.nsze, (16u << 20) / 4096);
    EXPECT_EQ(ns1.lbaf[0].lbads, 12);
    auto ns3 = as<nvme::identify_ns>(c.identify(nvme::cns::ns, 3).data);
    EXPECT_EQ(ns3.nsze, (1u << 20) / 512);
    EXPECT_EQ(ns3.lbaf[0].lbads, 9);
    // Inactive NSID: zeroes, success. Broadcast NSID: invalid.
    auto ns2 = c.identify(nvme::cns::ns, 2);
    EXPECT_EQ(ns2.status, 0);
    EXPECT_TRUE(std::all_of(ns2.data.begin(), ns2.data.end(), [](uint8_t b) { return b == 0; }));
    EXPECT_EQ(c.identify(nvme::cns::ns, 0xFFFFFFFF).status, nvme::sc::invalid_namespace | nvme::status_dnr);

    auto desc = c.identify(nvme::cns::ns_desc_list, 1);
    ASSERT_EQ(desc.status, 0);
    std::map<uint8_t, std::vector<uint8_t>> ids;
    for (size_t at = 0; at < 4096 && desc.data[at];) {
        uint8_t type = desc.data[at], len = desc.data[at + 1];
        ids[type] = std::vector<uint8_t>(desc.data.begin() + at + 4, desc.data.begin() + at + 4 + len);
        at += 4 + len;
    }
    ASSERT_EQ(ids.size(), 3u);  // no EUI64 unless configured
    EXPECT_EQ(ids.count(nvme::nidt::eui64), 0u);
    EXPECT_EQ(ids[nvme::nidt::nguid].size(), 16u);
    EXPECT_EQ(ids[nvme::nidt::uuid].size(), 16u);
    EXPECT_EQ(ids[nvme::nidt::csi], std::vector<uint8_t>{0});
    // Stable across targets built from the same config; distinct per namespace.
    harness h2;
    host_conn c2(h2);
    c2.bring_up_admin(open_nqn, host_a);
    EXPECT_EQ(c2.identify(nvme::cns::ns_desc_list, 1).data, desc.data);
    EXPECT_NE(c.identify(nvme::cns::ns_desc_list, 3).data, desc.data);
    EXPECT_EQ(c.identify(nvme::cns::ns_desc_list, 2).status, nvme::sc::invalid_namespace | nvme::status_dnr);
}

TEST(identify, configured_uuid_is_reported) {
    auto cfg = test_config();
    cfg.subsystems[0].namespaces[0].uuid =
        std::array<uint8_t, 16>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    harness h(cfg);
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    auto d = c.identify(nvme::cns::ns_desc_list, 1).data;
    // NGUID (4+16), then UUID (no EUI64 configured).
    EXPECT_EQ(d[20], nvme::nidt::uuid);
    EXPECT_EQ(d[24], 1);
    EXPECT_EQ(d[39], 16);
}

TEST(identify, configured_nguid_and_eui64_are_reported) {
    auto cfg = test_config();
    cfg.subsystems[0].namespaces[0].nguid =
        std::array<uint8_t, 16>{0xA0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    cfg.subsystems[0].namespaces[0].eui64 = std::array<uint8_t, 8>{0xE0, 1, 2, 3, 4, 5, 6, 7};
    harness h(cfg);
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    auto d = c.identify(nvme::cns::ns_desc_list, 1).data;
    // EUI64 (4+8), NGUID (4+16), then UUID.
    EXPECT_EQ(d[0], nvme::nidt::eui64);
    EXPECT_EQ(d[4], 0xE0);
    EXPECT_EQ(d[12], nvme::nidt::nguid);
    EXPECT_EQ(d[16], 0xA0);
    EXPECT_EQ(d[32], nvme::nidt::uuid);
    auto id = as<nvme::identify_ns>(c.identify(nvme::cns::ns, 1).data);
    EXPECT_EQ(id.eui64[0], 0xE0);
    EXPECT_EQ(id.nguid[0], 0xA0);
}

TEST(identify, command_set_independent_namespace) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    auto r = c.identify(nvme::cns::cs_indep_ns, 1);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.data[1], 1);   // NMIC
    EXPECT_EQ(r.data[14], 1);  // NSTAT: ready (byte 14; 12-13 are ENDGID)
    EXPECT_EQ(r.data[13], 0);
    uint32_t group = 0;
    std::memcpy(&group, r.data.data() + 4, 4);  // ANAGRPID, the same as Identify Namespace's
    EXPECT_EQ(group, as<nvme::identify_ns>(c.identify(nvme::cns::ns, 1).data).anagrpid);
    EXPECT_NE(group, 0u);
    EXPECT_EQ(c.identify(nvme::cns::cs_indep_ns, 2).data[14], 0);
    EXPECT_EQ(c.identify(nvme::cns::cs_indep_ns, 0).status, nvme::sc::invalid_namespace | nvme::status_dnr);
}

TEST(identify, unsupported_cns_and_csi) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    EXPECT_EQ(c.identify(0x13).status, nvme::sc::invalid_field | nvme::status_dnr);
    EXPECT_EQ(c.identify(nvme::cns::cs_ctrl, 0, 0).status, 0);
    EXPECT_EQ(c.identify(nvme::cns::cs_ctrl, 0, 2).status, nvme::sc::invalid_field | nvme::status_dnr);
}

TEST(admin, unknown_opcode_and_fabrics_only_commands) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    EXPECT_EQ(c.cmd(c.make(nvme::admin_opc::create_sq)).status, nvme::sc::invalid_opcode | nvme::status_dnr);
    EXPECT_EQ(c.cmd(c.make(0xC5)).status, nvme::sc::invalid_opcode | nvme::status_dnr);
    auto ab = c.cmd(c.make(nvme::admin_opc::abort));
    EXPECT_EQ(ab.status, 0);
    EXPECT_EQ(ab.cqe.dw0 & 1, 1u);  // not aborted
    EXPECT_EQ(c.cmd(c.make(nvme::admin_opc::keep_alive)).status, 0);
}

// No fused operations (Identify FUSES 0): FUSE bits on an admin or fabrics command are an
// invalid field, as in nvmet; the same command without them succeeds.
TEST(admin, fused_admin_and_fabrics_commands_are_refused) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    for (uint8_t fuse : {1, 2, 3}) {
        auto id = c.make(nvme::admin_opc::identify);
        id.cdw10 = nvme::cns::ctrl;
        id.flags = fuse;
        EXPECT_EQ(c.cmd(id, {}, 4096).status, nvme::sc::invalid_field | nvme::status_dnr) << +fuse;
        nvme::property_sqe p{};
        p.opcode = nvme::admin_opc::fabrics;
        p.cid = c.next_cid();
        p.fctype = nvme::fctype::property_get;
        p.offset = nvme::reg::csts;
        p.flags = fuse;
        EXPECT_EQ(c.cmd(reinterpret_cast<const nvme::sqe&>(p)).status, nvme::sc::invalid_field | nvme::status_dnr)
            << +fuse;
    }
    EXPECT_EQ(c.identify(nvme::cns::ctrl).status, 0);
    EXPECT_EQ(c.property_get(nvme::reg::csts).status, 0);
}

TEST(log_page, supported_smart_effects_and_errors) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    auto smart = c.get_log(nvme::lid::smart, 512);
    EXPECT_EQ(smart.status, 0);
    EXPECT_EQ(as<uint64_t>(smart.data, 112), 1u);  // power cycles: this ferryd
    EXPECT_EQ(smart.data[3], 0);                   // no spare capacity to speak of in RAM
    EXPECT_EQ(as<uint16_t>(smart.data, 1), 0);     // nor a temperature sensor
    auto eff = c.get_log(nvme::lid::cmd_effects, 4096);
    EXPECT_EQ(eff.status, 0);
    EXPECT_EQ(as<uint32_t>(eff.data, nvme::admin_opc::identify * 4) & 1, 1u);
    EXPECT_EQ(as<uint32_t>(eff.data, 1024 + nvme::io_opc::write * 4) & 3, 3u);
    EXPECT_EQ(c.get_log(0x0D, 4096).status, nvme::sc::invalid_log_page | nvme::status_dnr);  // not offered
    EXPECT_EQ(c.get_log(nvme::lid::supported, 1024).data[nvme::lid::ana * 4], 1);            // ANA (0Ch) is
    EXPECT_EQ(c.get_log(nvme::lid::smart, 512, 2).status, nvme::sc::invalid_field | nvme::status_dnr);
    // Partial reads at an offset: the power cycles field alone.
    auto part = c.get_log(nvme::lid::smart, 8, 112);
    EXPECT_EQ(part.data.size(), 8u);
    EXPECT_EQ(as<uint64_t>(part.data), 1u);
    // Errors so far: the unknown log page and the bad offset, newest first.
    EXPECT_EQ(as<uint64_t>(c.get_log(nvme::lid::smart, 512).data, 176), 2u);
    // NUMD disagreeing with the SGL length.
    auto lp = c.make(nvme::admin_opc::get_log_page);
    lp.cdw10 = nvme::lid::smart | (127u << 16);  // 512 bytes
    EXPECT_EQ(c.cmd(lp, {}, 4096).status, nvme::sc::sgl_invalid_data_length | nvme::status_dnr);
}

namespace {
response smart_of(host_conn& c, uint32_t nsid) {
    auto lp = c.make(nvme::admin_opc::get_log_page, nsid);
    lp.cdw10 = nvme::lid::smart | (127u << 16);
    return c.cmd(lp, {}, 512);
}
struct smart_io {
    uint64_t units_read, units_written, reads, writes, media_errors, error_entries;
};
smart_io smart_io_of(host_conn& c, uint32_t nsid) {
    auto r = smart_of(c, nsid);
    EXPECT_EQ(r.status, 0);
    return {as<uint64_t>(r.data, 32), as<uint64_t>(r.data, 48),  as<uint64_t>(r.data, 64),
            as<uint64_t>(r.data, 80), as<uint64_t>(r.data, 160), as<uint64_t>(r.data, 176)};
}
}  // namespace

TEST(log_page, smart_counts_the_io_done_per_namespace_and_controller_wide) {
    harness h;
    {
        association a(h);
        host_conn& io = a.io;
        // NSID 1 (4 KiB blocks): 8 KiB + 1 MiB written = 2064 units of 512 B -> 3 (rounded up);
        // one Read of 4 KiB (8 units -> 1) and one Compare (a read command, no data units).
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 0, 2), pattern(8192, 1)).status, 0);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 256, 256), pattern(1u << 20, 2), 0, false).status, 0);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096).status, 0);
        auto first_block = pattern(8192, 1);
        first_block.resize(4096);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::compare, 1, 0, 1), first_block).status, 0);
        // NSID 3 (512 B blocks): 3 units written -> 1, 1 unit read -> 1.
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::write, 3, 0, 3), pattern(1536, 3)).status, 0);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::read, 3, 0, 1), {}, 512).status, 0);
        // Not counted: Flush, Write Zeroes, a command refused before it reached the store.
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::flush, 1, 0, 1)).status, 0);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::write_zeroes, 1, 0, 1)).status, 0);
        ASSERT_NE(io.cmd(io.rw(nvme::io_opc::read, 1, 1u << 30, 1), {}, 4096).status, 0);

        auto ns1 = smart_io_of(a.admin, 1);
        EXPECT_EQ(ns1.units_written, 3u);
        EXPECT_EQ(ns1.units_read, 1u);
        EXPECT_EQ(ns1.writes, 2u);
        EXPECT_EQ(ns1.reads, 2u);
        auto ns3 = smart_io_of(a.admin, 3);
        EXPECT_EQ(ns3.units_written, 1u);
        EXPECT_EQ(ns3.units_read, 1u);
        EXPECT_EQ(ns3.writes, 1u);
        EXPECT_EQ(ns3.reads, 1u);
        // Controller-wide (NSID FFFFFFFFh or 0): 2067 units written -> 3, 9 read -> 1.
        for (uint32_t all : {0xFFFFFFFFu, 0u}) {
            auto t = smart_io_of(a.admin, all);
            EXPECT_EQ(t.units_written, 3u);
            EXPECT_EQ(t.units_read, 1u);
            EXPECT_EQ(t.writes, 3u);
            EXPECT_EQ(t.reads, 3u);
            EXPECT_EQ(t.media_errors, 0u);
            EXPECT_EQ(t.error_entries, 1u);  // the out-of-range read
        }
        EXPECT_EQ(smart_of(a.admin, 2).status, nvme::sc::invalid_namespace | nvme::status_dnr);
    }
    // The counters describe the namespaces, not one association: a new controller sees them,
    // and I/O on two queues adds up.
    association b(h);
    host_conn io2(h);
    io2.icreq();
    ASSERT_EQ(io2.connect(open_nqn, host_a, 2, b.cntlid, 31, 0).status, 0);
    ASSERT_EQ(b.io.cmd(b.io.rw(nvme::io_opc::write, 3, 0, 1), pattern(512, 4)).status, 0);
    ASSERT_EQ(io2.cmd(io2.rw(nvme::io_opc::write, 3, 1, 1), pattern(512, 5)).status, 0);
    auto ns3 = smart_io_of(b.admin, 3);
    EXPECT_EQ(ns3.writes, 3u);
    EXPECT_EQ(ns3.units_written, 1u);  // 5 units
    EXPECT_EQ(ns3.error_entries, 0u);  // the error log is the new controller's
}

namespace {
// A store that reports device health, as an SSD's does, around a RAM store.
struct ssd_like_store final : nvme::block_store {
    std::unique_ptr<nvme::block_store> inner;
    nvme::device_health h;
    ssd_like_store(std::unique_ptr<nvme::block_store> s, nvme::device_health dh) : inner(std::move(s)), h(dh) {}
    uint64_t block_count() const override { return inner->block_count(); }
    uint32_t block_size() const override { return inner->block_size(); }
    std::string describe() const override { return "test SSD"; }
    std::optional<nvme::device_health> health() const override { return h; }
    std::unique_ptr<nvme::block_queue> create_queue(unsigned depth, const env::dma_pool* buffers,
                                                    nvme::queue_group* group) override {
        return inner->create_queue(depth, buffers, group);
    }
};
void make_ssd_like(harness& h, uint32_t nsid, const nvme::device_health& dh) {
    auto& n = const_cast<target::ns&>(*h.tgt.find_subsystem(open_nqn)->find_ns(nsid));
    n.store = std::make_unique<ssd_like_store>(std::move(n.store), dh);
}
}  // namespace

TEST(log_page, smart_merges_the_health_an_ssd_reports) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    EXPECT_EQ(smart_of(c, 1).data[0], 0);
    make_ssd_like(h, 1, {0x02, 310, 80, 10, 7, 5, 0});
    auto ns1 = smart_of(c, 1).data;
    EXPECT_EQ(ns1[0], 0x02);  // critical warning
    EXPECT_EQ(as<uint16_t>(ns1, 1), 310u);
    EXPECT_EQ(ns1[3], 80);
    EXPECT_EQ(ns1[4], 10);
    EXPECT_EQ(ns1[5], 7);
    EXPECT_EQ(as<uint64_t>(ns1, 160), 5u);  // the SSD's media errors
    auto ns3 = smart_of(c, 3).data;         // RAM: nothing to report
    EXPECT_EQ(ns3[0], 0);
    EXPECT_EQ(as<uint16_t>(ns3, 1), 0u);
    EXPECT_EQ(as<uint64_t>(ns3, 160), 0u);
    // Controller-wide over two SSDs: warnings OR-ed, hottest, least spare, most wear, errors summed.
    make_ssd_like(h, 3, {0x01, 300, 50, 20, 9, 2, 0});
    auto all = smart_of(c, 0xFFFFFFFF).data;
    EXPECT_EQ(all[0], 0x03);
    EXPECT_EQ(as<uint16_t>(all, 1), 310u);
    EXPECT_EQ(all[3], 50);
    EXPECT_EQ(all[4], 20);
    EXPECT_EQ(all[5], 9);
    EXPECT_EQ(as<uint64_t>(all, 160), 7u);
}

TEST(log_page, smart_busy_time_is_minutes_with_commands_outstanding) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    auto& stats = *h.tgt.find_subsystem(open_nqn)->find_ns(1)->stats;
    constexpr uint64_t minute = 60'000'000'000ull;
    // One queue's counters: 2 minutes busy before, busy again for 3 minutes and still running.
    auto q = stats.attach();
    q->busy_ns.store(2 * minute);
    q->busy_since_ns.store(target::coarse_now_ns() - 3 * minute - 1'000'000'000);
    EXPECT_EQ(as<uint64_t>(smart_of(c, 1).data, 96), 5u);
    EXPECT_EQ(as<uint64_t>(smart_of(c, 0xFFFFFFFF).data, 96), 5u);
    EXPECT_EQ(as<uint64_t>(smart_of(c, 3).data, 96), 0u);
    // Idle and closed: the closed periods stay with the namespace.
    q->busy_since_ns.store(0);
    stats.detach(q);
    EXPECT_EQ(as<uint64_t>(smart_of(c, 1).data, 96), 2u);
}

TEST(log_page, error_information_records_errors_newest_first) {
    harness h;
    association a(h);
    auto idc = as<nvme::identify_ctrl>(a.admin.identify(nvme::cns::ctrl).data);
    EXPECT_EQ(idc.elpe, target::error_log::capacity - 1);
    EXPECT_EQ(idc.lpa & 1, 1);  // SMART per namespace
    auto bad_ns = a.io.rw(nvme::io_opc::read, 2, 0, 1);
    ASSERT_EQ(a.io.cmd(bad_ns, {}, 4096).status, nvme::sc::invalid_namespace | nvme::status_dnr);
    auto out_of_range = a.io.rw(nvme::io_opc::read, 1, 5000, 1);
    ASSERT_EQ(a.io.cmd(out_of_range, {}, 4096).status, nvme::sc::lba_out_of_range | nvme::status_dnr);
    auto bad_admin = a.admin.make(0xC5);
    ASSERT_EQ(a.admin.cmd(bad_admin).status, nvme::sc::invalid_opcode | nvme::status_dnr);

    const uint32_t len = (idc.elpe + 1u) * 64;
    auto log = a.admin.get_log(nvme::lid::error, len);
    ASSERT_EQ(log.status, 0);
    ASSERT_EQ(log.data.size(), len);
    // Newest first: the admin opcode, then the out-of-range read, then the unknown namespace.
    EXPECT_EQ(as<uint64_t>(log.data, 0), 3u);
    EXPECT_EQ(as<uint16_t>(log.data, 8), 0u);  // SQID
    EXPECT_EQ(as<uint16_t>(log.data, 10), bad_admin.cid);
    EXPECT_EQ(as<uint16_t>(log.data, 12), nvme::cqe_status(nvme::sc::invalid_opcode | nvme::status_dnr));
    EXPECT_EQ(as<uint64_t>(log.data, 64), 2u);
    EXPECT_EQ(as<uint16_t>(log.data, 64 + 8), 1u);
    EXPECT_EQ(as<uint16_t>(log.data, 64 + 10), out_of_range.cid);
    EXPECT_EQ(as<uint16_t>(log.data, 64 + 12), nvme::cqe_status(nvme::sc::lba_out_of_range | nvme::status_dnr));
    EXPECT_EQ(as<uint16_t>(log.data, 64 + 14), 0xFFFF);  // parameter location unknown
    EXPECT_EQ(as<uint64_t>(log.data, 64 + 16), 5000u);   // LBA
    EXPECT_EQ(as<uint32_t>(log.data, 64 + 24), 1u);      // NSID
    EXPECT_EQ(as<uint64_t>(log.data, 128), 1u);
    EXPECT_EQ(as<uint16_t>(log.data, 128 + 10), bad_ns.cid);
    EXPECT_EQ(as<uint32_t>(log.data, 128 + 24), 2u);
    EXPECT_EQ(as<uint64_t>(log.data, 192), 0u);  // no fourth entry
    EXPECT_EQ(smart_io_of(a.admin, 0xFFFFFFFF).error_entries, 3u);

    // The ring keeps the newest ELPE + 1; the count goes on.
    for (unsigned i = 0; i < target::error_log::capacity; ++i) ASSERT_NE(a.admin.cmd(a.admin.make(0xC5)).status, 0);
    log = a.admin.get_log(nvme::lid::error, len);
    EXPECT_EQ(as<uint64_t>(log.data, 0), 3u + target::error_log::capacity);
    EXPECT_EQ(as<uint64_t>(log.data, len - 64), 4u);
    EXPECT_EQ(smart_io_of(a.admin, 0xFFFFFFFF).error_entries, 3u + target::error_log::capacity);
}

TEST(log_page, firmware_revision_is_the_project_version) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    std::string fr = FERRY_VERSION;  // CMake's project(VERSION), space padded
    ASSERT_LE(fr.size(), 8u);
    fr.resize(8, ' ');
    auto ic = as<nvme::identify_ctrl>(c.identify(nvme::cns::ctrl).data);
    EXPECT_EQ(std::string(ic.fr, 8), fr);
    auto fw = c.get_log(nvme::lid::fw_slot, 512);
    ASSERT_EQ(fw.status, 0);
    EXPECT_EQ(fw.data[0], 1);  // slot 1 active
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(&fw.data[8]), 8), fr);
}

TEST(features, number_of_queues_async_config_kato) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    auto sf = [&](uint8_t fid, uint32_t v) {
        auto s = c.make(nvme::admin_opc::set_features);
        s.cdw10 = fid;
        s.cdw11 = v;
        return c.cmd(s);
    };
    auto gf = [&](uint8_t fid, uint8_t sel = 0) {
        auto s = c.make(nvme::admin_opc::get_features);
        s.cdw10 = fid | (uint32_t(sel) << 8);
        return c.cmd(s);
    };
    auto nq = sf(nvme::fid::num_queues, (999u << 16) | 999u);
    EXPECT_EQ(nq.cqe.dw0, ((target::max_io_queues - 1u) << 16) | (target::max_io_queues - 1u));
    EXPECT_EQ(sf(nvme::fid::num_queues, 0xFFFF).status, nvme::sc::invalid_field | nvme::status_dnr);
    EXPECT_EQ(sf(nvme::fid::async_event, nvme::aen::cfg_ns_attr).status, 0);
    EXPECT_EQ(gf(nvme::fid::async_event).cqe.dw0, nvme::aen::cfg_ns_attr);
    EXPECT_EQ(sf(nvme::fid::async_event, 1u << 31).status, nvme::sc::invalid_field | nvme::status_dnr);
    // The SMART critical-warning bits (4:0) are accepted and read back (SPDK's host sets them).
    const uint32_t with_smart = nvme::aen::cfg_ns_attr | nvme::aen::cfg_ana | 0x1Fu;
    EXPECT_EQ(sf(nvme::fid::async_event, with_smart).status, 0);
    EXPECT_EQ(gf(nvme::fid::async_event).cqe.dw0, with_smart);
    EXPECT_EQ(sf(nvme::fid::async_event, 0x20).status, nvme::sc::invalid_field | nvme::status_dnr);  // reserved here
    // SEL saved (nothing is saveable) and default: the defaults, not the current values.
    ASSERT_EQ(sf(nvme::fid::num_queues, (1u << 16) | 1u).status, 0);  // no I/O queue yet: may change
    EXPECT_EQ(gf(nvme::fid::num_queues).cqe.dw0, (1u << 16) | 1u);
    for (uint8_t sel : {1, 2}) {
        EXPECT_EQ(gf(nvme::fid::async_event, sel).status, 0) << +sel;
        EXPECT_EQ(gf(nvme::fid::async_event, sel).cqe.dw0, 0u) << +sel;
        EXPECT_EQ(gf(nvme::fid::num_queues, sel).cqe.dw0,
                  ((target::max_io_queues - 1u) << 16) | (target::max_io_queues - 1u))
            << +sel;
        EXPECT_EQ(gf(nvme::fid::keep_alive, sel).status, 0) << +sel;
    }
    EXPECT_EQ(gf(nvme::fid::async_event, 4).status, nvme::sc::invalid_field | nvme::status_dnr);
    EXPECT_EQ(sf(nvme::fid::keep_alive, 15000).status, 0);
    EXPECT_EQ(gf(nvme::fid::keep_alive).cqe.dw0, 15000u);
    // Rounded up to the 1 s granularity Identify KAS advertises, as nvmet: the value enforced.
    EXPECT_EQ(sf(nvme::fid::keep_alive, 1500).status, 0);
    EXPECT_EQ(gf(nvme::fid::keep_alive).cqe.dw0, 2000u);
    EXPECT_EQ(sf(nvme::fid::keep_alive, 0xFFFFFFFF).status, 0);
    EXPECT_EQ(gf(nvme::fid::keep_alive).cqe.dw0, 0xFFFFFFFFu / 1000 * 1000);
    EXPECT_EQ(sf(nvme::fid::keep_alive, 15000).status, 0);
    EXPECT_EQ(gf(nvme::fid::volatile_wc).cqe.dw0, 1u);
    EXPECT_EQ(sf(0x0E, 0).status, nvme::sc::invalid_field | nvme::status_dnr);
    auto save = c.make(nvme::admin_opc::set_features);
    save.cdw10 = nvme::fid::keep_alive | (1u << 31);
    EXPECT_EQ(c.cmd(save).status, nvme::sc::feature_not_saveable | nvme::status_dnr);
}

// Only the Host Identifier has data. Get Features used to answer any other FID with success
// and send the host's whole buffer back as the pool left it (another connection's data); and
// Identify took any length. Both now want the exact length, as nvmet (nvmet_check_transfer_len).
TEST(features, data_lengths_are_exact_and_nothing_unwritten_is_sent) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    for (uint8_t fid :
         {nvme::fid::keep_alive, nvme::fid::async_event, nvme::fid::num_queues, nvme::fid::temp_threshold}) {
        auto g = c.make(nvme::admin_opc::get_features);
        g.cdw10 = fid;
        auto r = c.cmd(g, {}, 8192);
        EXPECT_EQ(r.status, nvme::sc::sgl_invalid_data_length | nvme::status_dnr) << +fid;
        EXPECT_TRUE(r.data.empty()) << +fid;
        EXPECT_EQ(c.cmd(g).status, 0) << +fid;  // without a buffer
    }
    // FIDs not offered stay Invalid Field whatever the buffer: nvme-cli sends one for those that
    // have data (LBA Range Type 03h: 4 KiB, Timestamp 0Eh: 8 bytes) and, walking every FID,
    // stops at any other status.
    for (auto [fid, len] : {std::pair<uint8_t, uint32_t>{0x03, 4096}, {0x0E, 8}, {0x0C, 256}, {0x16, 512}}) {
        auto g = c.make(nvme::admin_opc::get_features);
        g.cdw10 = fid;
        EXPECT_EQ(c.cmd(g, {}, len).status, nvme::sc::invalid_field | nvme::status_dnr) << +fid;
    }
    auto hid = c.make(nvme::admin_opc::get_features);
    hid.cdw10 = nvme::fid::host_id;
    hid.cdw11 = 0;  // 64-bit host identifier (nvme-cli's default, 8 bytes): not on fabrics
    EXPECT_EQ(c.cmd(hid, {}, 8).status, nvme::sc::invalid_field | nvme::status_dnr);
    hid.cdw11 = 1;  // EXHID
    EXPECT_EQ(c.cmd(hid, {}, 4096).status, nvme::sc::sgl_invalid_data_length | nvme::status_dnr);
    EXPECT_EQ(c.cmd(hid, {}, 16).status, 0);
    hid.cdw11 = 0;
    EXPECT_EQ(c.cmd(hid, {}, 16).status, nvme::sc::invalid_field | nvme::status_dnr);
    // Fixed by Connect on fabrics: Set Features Host Identifier is a sequence error (nvmet).
    auto shid = c.make(nvme::admin_opc::set_features);
    shid.cdw10 = nvme::fid::host_id;
    shid.cdw11 = 1;
    EXPECT_EQ(c.cmd(shid, std::vector<uint8_t>(16, 1)).status, nvme::sc::command_sequence_error | nvme::status_dnr);

    for (uint32_t len : {512u, 4095u, 4100u, 8192u}) {
        auto id = c.make(nvme::admin_opc::identify);
        id.cdw10 = nvme::cns::ctrl;
        auto r = c.cmd(id, {}, len);
        EXPECT_EQ(r.status, nvme::sc::sgl_invalid_data_length | nvme::status_dnr) << len;
        EXPECT_TRUE(r.data.empty()) << len;
    }
    EXPECT_EQ(c.identify(nvme::cns::ctrl).status, 0);
}

namespace {
// A RAM store that reports other features: no volatile write cache (as rbd with
// rbd_cache=false) or fewer optional commands (as an SSD may).
struct ram_with_features final : nvme::block_store {
    bool vwc = true;
    uint16_t oncs = 0x0D;
    std::unique_ptr<nvme::block_store> ram = nvme::make_ram_store(256, 4096);
    uint64_t block_count() const override { return ram->block_count(); }
    uint32_t block_size() const override { return ram->block_size(); }
    std::string describe() const override { return "RAM with other features"; }
    bool volatile_write_cache() const override { return vwc; }
    uint16_t optional_commands() const override { return oncs; }
    std::unique_ptr<nvme::block_queue> create_queue(unsigned depth, const env::dma_pool* buffers,
                                                    nvme::queue_group* group) override {
        return ram->create_queue(depth, buffers, group);
    }
};

// open_nqn with namespace 1 on `store` alone, added before any controller exists.
void use_store_as_ns1(harness& h, std::unique_ptr<ram_with_features> store) {
    auto n = std::make_shared<target::ns>();
    n->nsid = 1;
    n->store = std::move(store);
    n->blocks = n->store->block_count();
    n->block_size = 4096;
    n->lbads = 12;
    ASSERT_EQ(h.tgt.find_subsystem(open_nqn)->add_namespace(n), "");
}

// Set Features 0Bh (asynchronous event configuration); returns the status.
uint16_t enable_aen(host_conn& c, uint32_t mask) {
    auto s = c.make(nvme::admin_opc::set_features);
    s.cdw10 = nvme::fid::async_event;
    s.cdw11 = mask;
    return c.cmd(s).status;
}

target::target_config no_namespaces() {
    auto cfg = test_config();
    cfg.subsystems[0].namespaces.clear();
    return cfg;
}
}  // namespace

// The Commands Supported and Effects log lists the optional I/O commands Identify ONCS offers,
// no more: Compare and DSM are absent when a store lacks them.
TEST(log_page, effects_follow_oncs) {
    harness h(no_namespaces());
    auto store = std::make_unique<ram_with_features>();
    store->oncs = 0x08;  // Write Zeroes only
    use_store_as_ns1(h, std::move(store));
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    EXPECT_EQ(as<nvme::identify_ctrl>(c.identify(nvme::cns::ctrl).data).oncs, 0x08);
    auto eff = c.get_log(nvme::lid::cmd_effects, 4096);
    ASSERT_EQ(eff.status, 0);
    EXPECT_EQ(as<uint32_t>(eff.data, 1024 + nvme::io_opc::write_zeroes * 4) & 1, 1u);
    EXPECT_EQ(as<uint32_t>(eff.data, 1024 + nvme::io_opc::compare * 4), 0u);
    EXPECT_EQ(as<uint32_t>(eff.data, 1024 + nvme::io_opc::dataset_mgmt * 4), 0u);
    EXPECT_EQ(as<uint32_t>(eff.data, 1024 + nvme::io_opc::read * 4) & 1, 1u);
}

// Feature 06h exists only with a volatile write cache (Identify VWC bit 0).
TEST(features, no_volatile_write_cache_feature_without_a_cache) {
    harness h(no_namespaces());
    auto store = std::make_unique<ram_with_features>();
    store->vwc = false;
    use_store_as_ns1(h, std::move(store));
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    EXPECT_EQ(as<nvme::identify_ctrl>(c.identify(nvme::cns::ctrl).data).vwc & 1, 0);
    for (uint8_t sel : {0, 1, 3}) {
        auto g = c.make(nvme::admin_opc::get_features);
        g.cdw10 = nvme::fid::volatile_wc | (uint32_t(sel) << 8);
        EXPECT_EQ(c.cmd(g).status, nvme::sc::invalid_field | nvme::status_dnr) << +sel;
    }
    for (uint32_t wce : {1u, 0u}) {
        auto s = c.make(nvme::admin_opc::set_features);
        s.cdw10 = nvme::fid::volatile_wc;
        s.cdw11 = wce;
        EXPECT_EQ(c.cmd(s).status, nvme::sc::invalid_field | nvme::status_dnr) << wce;
    }
}

TEST(async_events, namespace_change_completes_a_parked_aer) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    auto aer = c.make(nvme::admin_opc::async_event);
    c.send_capsule(aer, {}, true, 0);
    // Not enabled yet: the event is dropped, the AER stays parked.
    c.queue().raise_event(nvme::aen::ns_changed);
    auto s = c.make(nvme::admin_opc::set_features);
    s.cdw10 = nvme::fid::async_event;
    s.cdw11 = nvme::aen::cfg_ns_attr;
    EXPECT_EQ(c.cmd(s).status, 0);  // the next PDU is this response: the AER did not complete
    c.queue().raise_event(nvme::aen::ns_changed);
    c.pump();
    auto r = c.wait(aer.cid);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 0);
    EXPECT_EQ(r->cqe.dw0, nvme::aen::ns_changed);
    EXPECT_EQ((r->cqe.dw0 >> 16) & 0xFF, nvme::lid::changed_ns);
}

// An event type once reported stays masked until its log page is read with RAE cleared (a read
// with RAE set keeps it masked); the next change is then reported.
TEST(async_events, reported_type_is_masked_until_its_log_is_read) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    ASSERT_EQ(enable_aen(c, nvme::aen::cfg_ns_attr), 0);
    auto first = c.make(nvme::admin_opc::async_event);
    c.send_capsule(first, {}, true, 0);
    auto second = c.make(nvme::admin_opc::async_event);
    c.send_capsule(second, {}, true, 0);
    c.queue().raise_event(nvme::aen::ns_changed);
    c.pump();
    auto e1 = c.wait(first.cid);
    ASSERT_TRUE(e1);
    EXPECT_EQ(e1->cqe.dw0, nvme::aen::ns_changed);
    // Masked: the second AER stays parked (wait() throws on any other CID answering first).
    c.queue().raise_event(nvme::aen::ns_changed);
    EXPECT_EQ(c.cmd(c.make(nvme::admin_opc::keep_alive)).status, 0);
    EXPECT_EQ(c.get_log(nvme::lid::changed_ns, 4096, 0, true).status, 0);  // RAE set: still masked
    c.queue().raise_event(nvme::aen::ns_changed);
    EXPECT_EQ(c.cmd(c.make(nvme::admin_opc::keep_alive)).status, 0);
    EXPECT_EQ(c.get_log(nvme::lid::changed_ns, 4096).status, 0);  // RAE clear: unmasked
    c.queue().raise_event(nvme::aen::ns_changed);
    c.pump();
    auto e2 = c.wait(second.cid);
    ASSERT_TRUE(e2);
    EXPECT_EQ(e2->cqe.dw0, nvme::aen::ns_changed);
}

// SPDK's host aborts its AERs locally when it detaches and reads CC with one of their CIDs: the
// parked AER is dropped unanswered and the new command runs. (Any other command's CID reused
// is a conflict: connection.outstanding_cid_reused_gets_command_id_conflict.)
TEST(async_events, a_reused_aer_cid_drops_that_aer) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    ASSERT_EQ(enable_aen(c, nvme::aen::cfg_ns_attr), 0);
    auto dropped = c.make(nvme::admin_opc::async_event);
    c.send_capsule(dropped, {}, true, 0);
    auto kept = c.make(nvme::admin_opc::async_event);
    c.send_capsule(kept, {}, true, 0);
    nvme::property_sqe p{};
    p.opcode = nvme::admin_opc::fabrics;
    p.cid = dropped.cid;
    p.fctype = nvme::fctype::property_get;
    p.offset = nvme::reg::cc;
    auto r = c.cmd(reinterpret_cast<const nvme::sqe&>(p));  // the next PDU answers it (wait() checks the CID)
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.cqe.dw0 & 1, 1u);  // CC.EN
    // The event goes to the AER still parked; nothing ever answers the dropped one.
    c.queue().raise_event(nvme::aen::ns_changed);
    c.pump();
    auto e = c.wait(kept.cid);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->cqe.dw0, nvme::aen::ns_changed);
    // Up to the limit again: the dropped AER no longer counts.
    for (unsigned i = 0; i < target::max_outstanding_aers; ++i)
        c.send_capsule(c.make(nvme::admin_opc::async_event), {}, true, 0);
    EXPECT_EQ(c.cmd(c.make(nvme::admin_opc::async_event)).status, nvme::sc::aer_limit_exceeded | nvme::status_dnr);
}

TEST(async_events, limit_is_enforced) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(open_nqn, host_a);
    for (unsigned i = 0; i < target::max_outstanding_aers; ++i)
        c.send_capsule(c.make(nvme::admin_opc::async_event), {}, true, 0);
    EXPECT_EQ(c.cmd(c.make(nvme::admin_opc::async_event)).status, nvme::sc::aer_limit_exceeded | nvme::status_dnr);
}

namespace {
struct disc_entry {
    uint8_t subtype;
    std::string subnqn, traddr, trsvcid;
};
// Entries of a whole discovery log page (header at 0).
std::vector<disc_entry> entries_of(const std::vector<uint8_t>& page) {
    std::vector<disc_entry> out;
    for (size_t at = 1024; at + 1024 <= page.size(); at += 1024) {
        nvme::discovery_log_entry e;
        std::memcpy(&e, page.data() + at, sizeof(e));
        out.push_back({e.subtype, std::string(nvme::fixed_string(e.subnqn, 256)),
                       std::string(nvme::fixed_string(e.traddr, 256)), std::string(nvme::fixed_string(e.trsvcid, 32))});
    }
    return out;
}
}  // namespace

TEST(discovery, log_lists_allowed_subsystems_only) {
    harness h;
    for (const char* host : {host_a, host_b}) {
        host_conn c(h);
        c.bring_up_admin(std::string(nvme::discovery_nqn), host, 0);
        auto ic = as<nvme::identify_ctrl>(c.identify(nvme::cns::ctrl).data);
        EXPECT_EQ(ic.cntrltype, 2);
        EXPECT_EQ(std::string(nvme::fixed_string(ic.subnqn, 256)), nvme::discovery_nqn);
        auto hdr = c.get_log(nvme::lid::discovery, 1024);
        ASSERT_EQ(hdr.status, 0);
        auto h0 = as<nvme::discovery_log_header>(hdr.data);
        const bool a = std::string(host) == host_a;
        EXPECT_EQ(h0.numrec, a ? 3u : 2u);
        auto full = c.get_log(nvme::lid::discovery, static_cast<uint32_t>(1024 + h0.numrec * 1024));
        auto es = entries_of(full.data);
        ASSERT_EQ(es.size(), h0.numrec);
        EXPECT_EQ(es[0].subtype, nvme::subtype_current_discovery);
        EXPECT_EQ(es[0].subnqn, nvme::discovery_nqn);
        EXPECT_EQ(es[1].subnqn, open_nqn);
        EXPECT_EQ(es[1].traddr, "127.0.0.1");
        EXPECT_EQ(es[1].trsvcid, "4420");
        if (a) {
            EXPECT_EQ(es[2].subnqn, restricted_nqn);
        }
        // Discovery controllers answer only what they must.
        EXPECT_EQ(c.get_log(nvme::lid::smart, 512).status, nvme::sc::invalid_log_page | nvme::status_dnr);
        EXPECT_EQ(c.identify(nvme::cns::ns, 1).status, nvme::sc::invalid_field | nvme::status_dnr);
        // Keep Alive works although KATO was 0 (a default applies).
        EXPECT_EQ(c.cmd(c.make(nvme::admin_opc::keep_alive)).status, 0);
    }
}

// What hosts read besides the NQNs: Identify LPA bit 2 (SPDK's host refuses to read the log at
// an offset without it), DCTYPE 0 (1 or 2 would make libnvme attempt TP 8010 registration),
// EFLAGS of the discovery subsystem's own entries, TREQ 0 for a referral, and wildcard
// listeners only of the family the host came by.
TEST(discovery, identify_eflags_referrals_and_wildcard_families) {
    harness h;
    host_conn c(h);
    c.bring_up_admin(std::string(nvme::discovery_nqn), host_a, 0);
    auto ic = as<nvme::identify_ctrl>(c.identify(nvme::cns::ctrl).data);
    EXPECT_EQ(ic.lpa & 0x04, 0x04);
    EXPECT_EQ(ic.dctype, 0);

    auto cfg = test_config();
    cfg.listeners.clear();
    cfg.listeners.push_back({"0.0.0.0", 4420});
    cfg.listeners.push_back({"::", 4420});
    cfg.listeners.push_back({"10.1.2.3", 4421});
    cfg.referrals.push_back({"10.9.9.9", 8009});
    target::target tgt(cfg);
    for (const std::string local : {"192.168.7.1", "fd00::7"}) {
        SCOPED_TRACE(local);
        transport::connection_info via;
        via.local_addr = local;
        auto page = tgt.discovery_log(host_a, via);
        const auto hdr = as<nvme::discovery_log_header>(page);
        ASSERT_EQ(page.size(), 1024 + hdr.numrec * 1024);
        unsigned wildcard_entries = 0, referrals = 0;
        for (uint64_t i = 0; i < hdr.numrec; ++i) {
            nvme::discovery_log_entry e;
            std::memcpy(&e, page.data() + 1024 + i * 1024, sizeof(e));
            const std::string addr(nvme::fixed_string(e.traddr, 256));
            SCOPED_TRACE(addr);
            if (e.subtype == nvme::subtype_referral) {
                ++referrals;
                EXPECT_EQ(addr, "10.9.9.9");
                EXPECT_EQ(e.treq, 0);
                EXPECT_EQ(e.eflags, 0);
                continue;
            }
            EXPECT_EQ(e.eflags, e.subtype == nvme::subtype_current_discovery ? 3 : 0);  // DUPRETINFO | EPCSD
            EXPECT_EQ(e.treq, nvme::treq_sqflow_disable_supported);
            if (addr == "10.1.2.3") continue;
            // A wildcard entry: the address the host reached, of that family.
            EXPECT_EQ(addr, local);
            EXPECT_EQ(e.adrfam, local.find(':') != std::string::npos ? nvme::adrfam_ipv6 : nvme::adrfam_ipv4);
            ++wildcard_entries;
        }
        EXPECT_EQ(referrals, 1u);
        EXPECT_EQ(wildcard_entries, 3u);  // the discovery subsystem, open and restricted (host_a)
    }
}

TEST(discovery, paging_with_lpo_matches_the_whole_page) {
    // Enough subsystems that entries cross several 4 KiB reads (as libnvme pages them).
    auto cfg = test_config();
    for (int i = 0; i < 9; ++i) {
        target::subsystem_config s;
        s.nqn = "nqn.2026-11.io.ferry:extra" + std::to_string(i);
        s.allow_any_host = true;
        cfg.subsystems.push_back(s);
    }
    cfg.listeners.push_back({"0.0.0.0", 4421});
    harness h(cfg);
    host_conn c(h);
    c.bring_up_admin(std::string(nvme::discovery_nqn), host_a, 0);
    auto hdr = as<nvme::discovery_log_header>(c.get_log(nvme::lid::discovery, 1024, 0, true).data);
    ASSERT_EQ(hdr.numrec, 2u * (1 + 2 + 9));
    const uint32_t total = static_cast<uint32_t>(1024 + hdr.numrec * 1024);
    auto whole = c.get_log(nvme::lid::discovery, total).data;
    // The header of the first, separate read: its GENCTR must match the whole page's.
    auto first = c.get_log(nvme::lid::discovery, 1024, 0, true).data;
    std::vector<uint8_t> paged(first.begin(), first.end());
    for (uint32_t off = 1024; off < total; off += 4096) {
        uint32_t n = std::min<uint32_t>(4096, total - off);
        auto part = c.get_log(nvme::lid::discovery, n, off, true);
        ASSERT_EQ(part.status, 0);
        paged.insert(paged.end(), part.data.begin(), part.data.end());
    }
    EXPECT_EQ(paged, whole);
    auto again = as<nvme::discovery_log_header>(c.get_log(nvme::lid::discovery, 1024).data);
    EXPECT_EQ(again.genctr, hdr.genctr);
    // The wildcard listener reports the address the host reached.
    auto es = entries_of(whole);
    EXPECT_EQ(es.back().traddr, "127.0.0.1");
    EXPECT_EQ(es.back().trsvcid, "4421");
    // Reading past the end returns zeroes; beyond the page is invalid.
    auto tail = c.get_log(nvme::lid::discovery, 1024, total - 512);
    EXPECT_EQ(tail.status, 0);
    EXPECT_TRUE(std::all_of(tail.data.begin() + 512, tail.data.end(), [](uint8_t b) { return b == 0; }));
    EXPECT_EQ(c.get_log(nvme::lid::discovery, 1024, total + 4096).status, nvme::sc::invalid_field | nvme::status_dnr);
}

TEST(discovery, has_no_io_queues) {
    harness h;
    host_conn admin(h);
    uint16_t id = admin.bring_up_admin(std::string(nvme::discovery_nqn), host_a, 0);
    host_conn io(h);
    io.icreq();
    EXPECT_EQ(io.connect(std::string(nvme::discovery_nqn), host_a, 1, id).status,
              nvme::sc::connect_invalid_param | nvme::status_dnr);
}
