// The management API's counters (mgmt/stats.hh): GET /api/v1/stats and GET /metrics against
// an in-process target, with I/O from the test host; the counts must be exactly the I/O done.
#include "mgmt/stats.hh"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "mgmt/status_page.hh"
#include "served_target.hh"
#include "target/stats.hh"

using namespace ferry;
using namespace ferry::test;

namespace {
const nlohmann::json& by_key(const nlohmann::json& list, const char* key, const nlohmann::json& value) {
    for (const auto& e : list)
        if (e.at(key) == value) return e;
    throw std::runtime_error(std::string("no entry with ") + key + " = " + value.dump() + " in " + list.dump());
}

uint64_t bucket_sum(const nlohmann::json& io) {
    uint64_t n = 0;
    for (const auto& b : io.at("latency").at("buckets")) n += b.get<uint64_t>();
    return n;
}

// The value of the one sample line `name{labels}` in a Prometheus text document.
std::optional<std::string> sample(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(series + " ", 0) == 0) return line.substr(series.size() + 1);
    return std::nullopt;
}

mgmt::runtime runtime_of(served_target& st) {
    mgmt::runtime rt{st.tgt, {}};
    for (auto& r : st.reactors) rt.reactors.push_back(r.get());
    return rt;
}
}  // namespace

TEST(stats, latency_buckets_are_log2_microseconds_rounded_up) {
    EXPECT_EQ(target::latency_bucket(0), 0u);
    EXPECT_EQ(target::latency_bucket(1000), 0u);  // <= 1 us
    EXPECT_EQ(target::latency_bucket(1001), 1u);  // <= 2 us
    EXPECT_EQ(target::latency_bucket(2000), 1u);
    EXPECT_EQ(target::latency_bucket(2001), 2u);
    EXPECT_EQ(target::latency_bucket(100'000), 7u);  // 100 us <= 128 us
    EXPECT_EQ(target::latency_bucket(1'048'576'000), 20u);
    EXPECT_EQ(target::latency_bucket(1'048'576'001), 21u);  // above the last bound
    EXPECT_EQ(target::latency_bucket(~uint64_t(0) / 2), 21u);
}

TEST(stats, error_statuses_are_classified_by_code_then_type) {
    using target::error_kind;
    EXPECT_EQ(target::classify_error(nvme::sc::lba_out_of_range | nvme::status_dnr), error_kind::lba_out_of_range);
    EXPECT_EQ(target::classify_error(nvme::sc::invalid_namespace), error_kind::invalid_namespace);
    EXPECT_EQ(target::classify_error(nvme::sc::sgl_invalid_data_length), error_kind::data_length);
    EXPECT_EQ(target::classify_error(nvme::sc::ns_not_ready), error_kind::other_generic);
    EXPECT_EQ(target::classify_error(nvme::sc::invalid_queue_id), error_kind::command_specific);
    EXPECT_EQ(target::classify_error(nvme::sc::unrecovered_read_error), error_kind::media);
    EXPECT_EQ(target::classify_error(nvme::sc::controller_path_error), error_kind::path);
    EXPECT_EQ(target::classify_error(0x7FF), error_kind::other);
    EXPECT_STREQ(target::error_kind_name(error_kind::lba_out_of_range), "lba_out_of_range");
    EXPECT_STREQ(target::error_kind_name(error_kind::other), "other");
}

TEST(stats, json_counts_the_io_done_per_namespace_controller_and_queue) {
    harness h;
    const mgmt::runtime rt{h.tgt, {}};
    {
        association a(h);
        host_conn io2(h);
        io2.icreq();
        ASSERT_EQ(io2.connect(open_nqn, host_a, 2, a.cntlid, 31, 0).status, 0);
        host_conn& io = a.io;
        // Queue 1, NSID 1 (4 KiB blocks): 3 writes of 8 KiB, one of 64 KiB through R2T, 2 reads
        // of 4 KiB, a Compare and a Flush (others); an out-of-range Read (an error, refused
        // before the store: not a command, no bytes).
        for (uint32_t i = 0; i < 3; ++i)
            ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, i * 2, 2), pattern(8192, i)).status, 0);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 64, 16), pattern(65536, 9), 0, false).status, 0);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096).status, 0);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 2, 1), {}, 4096).status, 0);
        auto first = pattern(8192, 0);
        first.resize(4096);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::compare, 1, 0, 1), first).status, 0);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::flush, 1, 0, 1)).status, 0);
        ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 1u << 30, 1), {}, 4096).status,
                  nvme::sc::lba_out_of_range | nvme::status_dnr);
        // Queue 2, NSID 3 (512 B blocks): a write of 3 blocks, a read of 1.
        ASSERT_EQ(io2.cmd(io2.rw(nvme::io_opc::write, 3, 0, 3), pattern(1536, 3)).status, 0);
        ASSERT_EQ(io2.cmd(io2.rw(nvme::io_opc::read, 3, 0, 1), {}, 512).status, 0);

        const nlohmann::json s = mgmt::stats_json(rt);
        ASSERT_EQ(s.at("latency_bucket_bounds_us").size(), target::latency_buckets - 1);
        const auto& open = by_key(s.at("subsystems"), "nqn", open_nqn);
        const auto& ns1 = by_key(open.at("namespaces"), "nsid", 1);
        EXPECT_EQ(ns1.at("reads"), 2);
        EXPECT_EQ(ns1.at("writes"), 4);
        EXPECT_EQ(ns1.at("others"), 2);
        EXPECT_EQ(ns1.at("commands"), 8);
        EXPECT_EQ(ns1.at("bytes_read"), 8192);
        EXPECT_EQ(ns1.at("bytes_written"), 3 * 8192 + 65536);
        EXPECT_EQ(ns1.at("errors"), 1);
        EXPECT_EQ(ns1.at("errors_by_status").at("lba_out_of_range"), 1);
        EXPECT_EQ(ns1.at("errors_by_status").at("invalid_field"), 0);
        EXPECT_EQ(ns1.at("latency").at("count"), 8);
        EXPECT_EQ(bucket_sum(ns1), 8u);
        EXPECT_GT(ns1.at("latency").at("sum_ns").get<uint64_t>(), 0u);
        const auto& ns3 = by_key(open.at("namespaces"), "nsid", 3);
        EXPECT_EQ(ns3.at("reads"), 1);
        EXPECT_EQ(ns3.at("writes"), 1);
        EXPECT_EQ(ns3.at("bytes_read"), 512);
        EXPECT_EQ(ns3.at("bytes_written"), 1536);
        EXPECT_EQ(open.at("commands"), 10);
        EXPECT_EQ(open.at("bytes_written"), 3 * 8192 + 65536 + 1536);
        // One controller, its two I/O queues, each with the namespaces it used.
        ASSERT_EQ(open.at("controllers").size(), 1u);
        const auto& ctrl = open.at("controllers")[0];
        EXPECT_EQ(ctrl.at("cntlid"), a.cntlid);
        EXPECT_EQ(ctrl.at("hostnqn"), host_a);
        EXPECT_EQ(ctrl.at("commands"), 10);
        const auto& q1 = by_key(ctrl.at("queues"), "qid", 1);
        EXPECT_EQ(q1.at("commands"), 8);
        EXPECT_EQ(by_key(q1.at("namespaces"), "nsid", 1).at("bytes_read"), 8192);
        EXPECT_EQ(by_key(q1.at("namespaces"), "nsid", 3).at("commands"), 0);
        const auto& q2 = by_key(ctrl.at("queues"), "qid", 2);
        EXPECT_EQ(q2.at("commands"), 2);
        EXPECT_EQ(by_key(q2.at("namespaces"), "nsid", 3).at("bytes_written"), 1536);
        // Nothing on the other subsystem.
        const auto& restricted = by_key(s.at("subsystems"), "nqn", restricted_nqn);
        EXPECT_EQ(restricted.at("commands"), 0);
        EXPECT_TRUE(restricted.at("controllers").empty());
    }
    // The queues closed: their counts stay in the namespace totals, the controller is gone.
    {
        const nlohmann::json s = mgmt::stats_json(rt);
        const auto& open = by_key(s.at("subsystems"), "nqn", open_nqn);
        EXPECT_TRUE(open.at("controllers").empty());
        EXPECT_EQ(by_key(open.at("namespaces"), "nsid", 1).at("commands"), 8);
        EXPECT_EQ(by_key(open.at("namespaces"), "nsid", 3).at("bytes_written"), 1536);
    }
    // A new association adds to them.
    association b(h);
    EXPECT_NE(b.cntlid, 0);
    ASSERT_EQ(b.io.cmd(b.io.rw(nvme::io_opc::write, 1, 0, 1), pattern(4096, 1)).status, 0);
    const nlohmann::json s = mgmt::stats_json(rt);
    const auto& open = by_key(s.at("subsystems"), "nqn", open_nqn);
    const auto& ns1 = by_key(open.at("namespaces"), "nsid", 1);
    EXPECT_EQ(ns1.at("writes"), 5);
    EXPECT_EQ(ns1.at("bytes_written"), 3 * 8192 + 65536 + 4096);
    ASSERT_EQ(open.at("controllers").size(), 1u);
    EXPECT_EQ(open.at("controllers")[0].at("cntlid"), b.cntlid);
    EXPECT_EQ(open.at("controllers")[0].at("commands"), 1);
}

TEST(stats, metrics_text_has_the_same_counts_in_prometheus_format) {
    harness h;
    association a(h);
    for (uint32_t i = 0; i < 5; ++i)
        ASSERT_EQ(a.io.cmd(a.io.rw(nvme::io_opc::write, 1, i, 1), pattern(4096, i)).status, 0);
    ASSERT_EQ(a.io.cmd(a.io.rw(nvme::io_opc::read, 1, 0, 2), {}, 8192).status, 0);
    ASSERT_NE(a.io.cmd(a.io.rw(nvme::io_opc::write, 1, 1u << 30, 1), pattern(4096, 0)).status, 0);
    const std::string text = mgmt::metrics_text({h.tgt, {}});

    const std::string ns = std::string("{subsystem=\"") + open_nqn + "\",nsid=\"1\"";
    EXPECT_EQ(sample(text, "ferry_namespace_commands_total" + ns + ",op=\"write\"}"), "5");
    EXPECT_EQ(sample(text, "ferry_namespace_commands_total" + ns + ",op=\"read\"}"), "1");
    EXPECT_EQ(sample(text, "ferry_namespace_commands_total" + ns + ",op=\"other\"}"), "0");
    EXPECT_EQ(sample(text, "ferry_namespace_written_bytes_total" + ns + "}"), "20480");
    EXPECT_EQ(sample(text, "ferry_namespace_read_bytes_total" + ns + "}"), "8192");
    EXPECT_EQ(sample(text, "ferry_namespace_errors_total" + ns + ",status=\"lba_out_of_range\"}"), "1");
    EXPECT_EQ(sample(text, "ferry_namespace_errors_total" + ns + ",status=\"media\"}"), "0");
    EXPECT_EQ(sample(text, "ferry_namespace_latency_seconds_count" + ns + "}"), "6");
    EXPECT_EQ(sample(text, "ferry_namespace_latency_seconds_bucket" + ns + ",le=\"+Inf\"}"), "6");
    const std::string q = ns + ",cntlid=\"" + std::to_string(a.cntlid) + "\",qid=\"1\"";
    EXPECT_EQ(sample(text, "ferry_queue_commands_total" + q + ",op=\"write\"}"), "5");
    EXPECT_EQ(sample(text, "ferry_queue_written_bytes_total" + q + "}"), "20480");
    EXPECT_EQ(sample(text, "ferry_queue_errors_total" + q + ",status=\"lba_out_of_range\"}"), "1");
    EXPECT_FALSE(sample(text, "ferry_queue_errors_total" + q + ",status=\"media\"}"));  // zero: left out
    EXPECT_EQ(sample(text, "ferry_subsystem_controllers{subsystem=\"" + std::string(open_nqn) + "\"}"), "1");

    // The format: every family has HELP then TYPE before its samples, every sample line is
    // name{labels} value, histogram buckets are cumulative and end with +Inf = _count.
    std::istringstream in(text);
    std::string line, family, type;
    std::map<std::string, std::string> types;
    const std::regex sample_re(R"(([a-z_]+)(\{([a-z_]+="([^"\\]|\\.)*")(,[a-z_]+="([^"\\]|\\.)*")*\})? ([0-9.e+-]+))");
    uint64_t last_bucket = 0;
    std::string last_series;
    int samples = 0;
    while (std::getline(in, line)) {
        if (line.rfind("# HELP ", 0) == 0) {
            family = line.substr(7, line.find(' ', 7) - 7);
            continue;
        }
        if (line.rfind("# TYPE ", 0) == 0) {
            std::istringstream t(line.substr(7));
            std::string name;
            t >> name >> type;
            ASSERT_EQ(name, family) << "TYPE without its HELP: " << line;
            ASSERT_FALSE(types.count(name)) << "family twice: " << name;
            types[name] = type;
            continue;
        }
        std::smatch m;
        ASSERT_TRUE(std::regex_match(line, m, sample_re)) << "not a sample line: " << line;
        ++samples;
        const std::string name = m[1];
        if (type == "histogram") {
            ASSERT_TRUE(name == family + "_bucket" || name == family + "_sum" || name == family + "_count") << line;
            if (name == family + "_bucket") {
                const std::string series = line.substr(0, line.find(",le="));
                const uint64_t v = std::stoull(m[7]);
                if (series == last_series) {
                    EXPECT_GE(v, last_bucket) << "buckets not cumulative: " << line;
                }
                last_series = series;
                last_bucket = v;
            }
        } else {
            ASSERT_EQ(name, family) << line;
            if (type == "counter") {
                EXPECT_TRUE(name.size() > 6 && name.substr(name.size() - 6) == "_total") << name;
            }
        }
    }
    EXPECT_GT(samples, 50);
    EXPECT_EQ(types["ferry_namespace_latency_seconds"], "histogram");
    EXPECT_EQ(types["ferry_reactor_busy_seconds_total"], "counter");
}

TEST(stats, metrics_label_values_are_escaped) {
    auto cfg = test_config();
    cfg.subsystems[0].nqn = "nqn.2026-11.io.ferry:odd\"name\\with\nbreaks";
    harness h(cfg);
    const std::string text = mgmt::metrics_text({h.tgt, {}});
    EXPECT_EQ(sample(text,
                     "ferry_namespace_read_bytes_total{subsystem=\"nqn.2026-11.io.ferry:odd\\\"name\\\\with\\nbreaks"
                     "\",nsid=\"1\"}"),
              "0")
        << text.substr(0, 2000);
}

TEST(stats, reactors_report_connections_busy_time_and_pool_chunks) {
    served_target st(2);
    tcp_association a(st.port, open_nqn, host_a);
    host_conn& q1 = *a.io[0];
    // 64 writes of 128 KiB (R2T, extra pool chunks) and 64 reads of them on reactor 1.
    for (uint32_t i = 0; i < 64; ++i)
        ASSERT_EQ(q1.cmd(q1.rw(nvme::io_opc::write, 1, i * 32, 32), pattern(128 * 1024, i), 0, false).status, 0);
    for (uint32_t i = 0; i < 64; ++i)
        ASSERT_EQ(q1.cmd(q1.rw(nvme::io_opc::read, 1, i * 32, 32), {}, 128 * 1024).status, 0);

    const nlohmann::json s = mgmt::stats_json(runtime_of(st));
    ASSERT_EQ(s.at("reactors").size(), 2u);
    const auto& r0 = by_key(s.at("reactors"), "id", 0);
    const auto& r1 = by_key(s.at("reactors"), "id", 1);
    EXPECT_EQ(r0.at("connections"), 1);  // round robin: admin on 0, the I/O queue on 1
    EXPECT_EQ(r1.at("connections"), 1);
    EXPECT_GT(r1.at("busy_ns").get<uint64_t>(), 0u);
    EXPECT_GT(r1.at("uptime_ns").get<uint64_t>(), r1.at("busy_ns").get<uint64_t>());
    EXPECT_GT(r1.at("busy_share").get<double>(), 0.0);
    EXPECT_LE(r1.at("busy_share").get<double>(), 1.0);
    // Each queue entry holds a reserved chunk while its connection lives: 128 on the I/O queue.
    EXPECT_GE(r1.at("pool_chunks_in_use").get<uint64_t>(), 128u);
    EXPECT_EQ(r1.at("pool_chunks_total"), (16u << 20) / env::dma_pool::chunk_size);
    const auto& ns1 = by_key(by_key(s.at("subsystems"), "nqn", open_nqn).at("namespaces"), "nsid", 1);
    EXPECT_EQ(ns1.at("writes"), 64);
    EXPECT_EQ(ns1.at("reads"), 64);
    EXPECT_EQ(ns1.at("bytes_written"), 64 * 128 * 1024);
    EXPECT_EQ(ns1.at("bytes_read"), 64 * 128 * 1024);

    const std::string text = mgmt::metrics_text(runtime_of(st));
    EXPECT_EQ(sample(text, "ferry_reactor_connections{reactor=\"1\"}"), "1");
    EXPECT_TRUE(sample(text, "ferry_reactor_busy_seconds_total{reactor=\"1\"}"));
    EXPECT_EQ(sample(text, "ferry_reactor_pool_chunks{reactor=\"0\"}"),
              std::to_string((16u << 20) / env::dma_pool::chunk_size));
}

// A reactor that slept until a command arrived counts the pass that served it from when it
// woke, not from before it slept: five reads 150 ms apart (the reactor sleeps between them,
// up to a 100 ms timer tick at a time) add a few milliseconds of busy time, not the sleeps.
TEST(stats, a_reactor_woken_from_sleep_does_not_count_the_sleep_as_busy) {
    for (auto engine : {transport::socket_engine::posix, transport::socket_engine::uring}) {
        SCOPED_TRACE(engine == transport::socket_engine::posix ? "posix" : "uring");
        serve_options o;
        o.engine = engine;
        served_target st(2, o);
        tcp_association a(st.port, open_nqn, host_a);
        host_conn& q1 = *a.io[0];
        auto busy = [&] {
            return by_key(mgmt::stats_json(runtime_of(st)).at("reactors"), "id", 1).at("busy_ns").get<uint64_t>();
        };
        ASSERT_EQ(q1.cmd(q1.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096).status, 0);
        const uint64_t before = busy();
        for (int i = 0; i < 5; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(150));
            ASSERT_EQ(q1.cmd(q1.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096).status, 0);
        }
        EXPECT_LT(busy() - before, 50'000'000u);
    }
}

TEST(status_page, is_one_self_contained_page_reading_the_api) {
    const std::string_view page = mgmt::status_page_html();
    EXPECT_EQ(page.substr(0, 15), "<!doctype html>");
    EXPECT_NE(page.find("</html>"), std::string_view::npos);  // embedded whole
    EXPECT_NE(page.find("/api/v1/stats"), std::string_view::npos);
    EXPECT_NE(page.find("/api/v1/subsystems"), std::string_view::npos);
    EXPECT_NE(page.find("sessionStorage"), std::string_view::npos);
    // No external assets: no stylesheet links, no script or image sources, no remote URLs.
    for (const char* external : {"<link", " src=", "http://", "https://", "@import", "url("})
        EXPECT_EQ(page.find(external), std::string_view::npos) << external;
}

TEST(stats, a_namespace_added_live_is_counted_on_queues_connected_before_it) {
    served_target st(2);
    tcp_association a(st.port, open_nqn, host_a);
    host_conn& q1 = *a.io[0];
    ASSERT_EQ(q1.cmd(q1.rw(nvme::io_opc::write, 1, 0, 1), pattern(4096, 1)).status, 0);

    target::namespace_config n;
    n.nsid = 0;  // the lowest free: 2
    n.backend = target::backend_kind::ram;
    n.size_bytes = 1u << 20;
    n.block_size = 4096;
    ASSERT_EQ(st.tgt.add_namespace(open_nqn, n), 2u);
    for (uint32_t i = 0; i < 3; ++i) ASSERT_EQ(q1.cmd(q1.rw(nvme::io_opc::write, 2, i, 1), pattern(4096, i)).status, 0);
    ASSERT_EQ(q1.cmd(q1.rw(nvme::io_opc::read, 2, 0, 2), {}, 8192).status, 0);

    const nlohmann::json s = mgmt::stats_json(runtime_of(st));
    const auto& open = by_key(s.at("subsystems"), "nqn", open_nqn);
    const auto& ns2 = by_key(open.at("namespaces"), "nsid", 2);
    EXPECT_EQ(ns2.at("writes"), 3);
    EXPECT_EQ(ns2.at("bytes_written"), 3 * 4096);
    EXPECT_EQ(ns2.at("bytes_read"), 8192);
    EXPECT_EQ(by_key(open.at("namespaces"), "nsid", 1).at("writes"), 1);
    // The queue's counters of the new namespace carry the queue's controller and qid.
    const auto& ctrl = by_key(open.at("controllers"), "cntlid", a.cntlid);
    EXPECT_EQ(ctrl.at("hostnqn"), host_a);
    const auto& q = by_key(ctrl.at("queues"), "qid", 1);
    EXPECT_EQ(by_key(q.at("namespaces"), "nsid", 2).at("writes"), 3);
    EXPECT_EQ(q.at("commands"), 5);

    // Removed: gone from the stats; the others keep their counts.
    st.tgt.remove_namespace(open_nqn, 2);
    const nlohmann::json after = mgmt::stats_json(runtime_of(st));
    const auto& open_after = by_key(after.at("subsystems"), "nqn", open_nqn);
    for (const auto& ns : open_after.at("namespaces")) EXPECT_NE(ns.at("nsid"), 2);
    EXPECT_EQ(by_key(open_after.at("namespaces"), "nsid", 1).at("writes"), 1);
}
