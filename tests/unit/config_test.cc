#include "mgmt/config.hh"
#include "mgmt/gateway_group.hh"

#include <gtest/gtest.h>

#include <set>

using ferry::mgmt::config_error;
using ferry::mgmt::parse_config;

namespace {
const char* demo = R"({
  "listeners": [ { "transport": "tcp", "address": "127.0.0.1", "port": 4420 } ],
  "subsystems": [
    { "nqn": "nqn.2026-11.io.ferry:demo", "allow_any_host": true, "hosts": [],
      "namespaces": [ { "nsid": 1, "backend": "ram", "size": "1GiB", "block_size": 4096,
                        "uuid": "0123abcd-0000-4000-8000-00000000beef" } ] } ]
})";

std::string error_of(const std::string& text) {
    try {
        parse_config(text, "cfg.json");
    } catch (const config_error& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST(config, demo_parses) {
    auto c = parse_config(demo, "demo.json");
    ASSERT_EQ(c.listeners.size(), 1u);
    EXPECT_EQ(c.listeners[0].port, 4420);
    ASSERT_EQ(c.subsystems.size(), 1u);
    const auto& s = c.subsystems[0];
    EXPECT_EQ(s.nqn, "nqn.2026-11.io.ferry:demo");
    EXPECT_TRUE(s.allow_any_host);
    ASSERT_EQ(s.namespaces.size(), 1u);
    EXPECT_EQ(s.namespaces[0].size_bytes, 1ull << 30);
    EXPECT_EQ(s.namespaces[0].block_size, 4096u);
    ASSERT_TRUE(s.namespaces[0].uuid.has_value());
    EXPECT_EQ((*s.namespaces[0].uuid)[0], 0x01);
    EXPECT_EQ((*s.namespaces[0].uuid)[15], 0xef);
}

TEST(config, errors_name_file_and_path) {
    EXPECT_EQ(error_of(R"({"listeners": [], "subsystems": [], "management": {"enabled": false}})"),
              "cfg.json: /listeners: at least one listener is needed (or the management API, to add them)");
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1", "port": 70000}], "subsystems": []})"),
              "cfg.json: /listeners/0/port: 70000 is out of range [1, 65535]");
    EXPECT_EQ(
        error_of(
            R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [{"nqn": "bad nqn", "allow_any_host": true}]})"),
        "cfg.json: /subsystems/0/nqn: 'bad nqn': an NQN must not contain spaces or control characters");
    EXPECT_EQ(
        error_of(
            R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [{"nqn": "nqn.2026-11.io.x:a", "allow_any_host": true,
                 "namespaces": [{"size": "1GB"}]}]})"),
        "cfg.json: /subsystems/0/namespaces/0/size: '1GB': unknown unit 'GB' (use B, KiB, MiB, GiB or TiB)");
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [], "extra": 1})"),
              "cfg.json: /extra: unknown key (expected one of: listeners, subsystems, referrals, management)");
    EXPECT_NE(error_of("{ not json").find("cfg.json: not valid JSON"), std::string::npos);
}

// A config or state file with a group in ANA Change would have Linux hosts reset the listener's
// controllers every 2 x ANATT for as long as ferryd runs: refused, naming listener and group.
TEST(config, ana_change_is_refused_naming_listener_and_group) {
    const std::string err = error_of(
        R"({"listeners": [{"address": "10.0.0.1", "port": 4421, "ana": {"1": "inaccessible", "3": "change"}}],
            "subsystems": []})");
    EXPECT_EQ(
        err.rfind("cfg.json: /listeners/0/ana/3: listener 10.0.0.1:4421 ANA group 3: 'change' cannot be set: ", 0), 0u)
        << err;
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "10.0.0.1", "ana": {"1": "persistent_loss", "2": "non_optimized",
                                         "3": "inaccessible", "4": "optimized"}}], "subsystems": []})"),
              "");
}

TEST(config, rejects_duplicates_and_unreachable_subsystems) {
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [{"nqn": "nqn.2026-11.io.x:a",
                 "allow_any_host": true, "namespaces": [{"nsid": 1, "size": 4096}, {"nsid": 1, "size": 4096}]}]})"),
              "cfg.json: /subsystems/0/namespaces/1/nsid: duplicate NSID 1");
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [{"nqn": "nqn.2026-11.io.x:a",
                 "allow_any_host": true, "namespaces": [{"size": 1000}]}]})"),
              "cfg.json: /subsystems/0/namespaces/0/size: must be a non-zero multiple of block_size (4096)");
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [{"nqn": "nqn.2026-11.io.x:a",
                 "allow_any_host": true, "namespaces": [{"size": 4096, "uuid": "zz"}]}]})"),
              "cfg.json: /subsystems/0/namespaces/0/uuid: 'zz' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
}

TEST(config, sizes) {
    EXPECT_EQ(ferry::mgmt::parse_size("4096"), 4096u);
    EXPECT_EQ(ferry::mgmt::parse_size("512MiB"), 512ull << 20);
    EXPECT_EQ(ferry::mgmt::parse_size("2TiB"), 2ull << 40);
    EXPECT_THROW(ferry::mgmt::parse_size("GiB"), std::invalid_argument);
    EXPECT_THROW(ferry::mgmt::parse_size("99999999999999999999"), std::invalid_argument);
}

TEST(config, load_missing_file_names_it) {
    try {
        ferry::mgmt::load_config_file("/nonexistent/ferry.json");
        FAIL();
    } catch (const config_error& e) {
        EXPECT_EQ(std::string(e.what()), "/nonexistent/ferry.json: cannot open: No such file or directory");
    }
}

namespace {
std::string pcie_ns(const std::string& ns_json) {
    return R"({"listeners": [ { "address": "127.0.0.1", "port": 4420 } ], "subsystems": [ { "nqn": "nqn.2026-11.io.ferry:ssd",
              "allow_any_host": true, "namespaces": [ )" +
           ns_json + " ] } ] }";
}
}  // namespace

TEST(config, pcie_namespace) {
    auto c = parse_config(pcie_ns(R"({ "nsid": 3, "backend": "pcie", "device": "pcie://0000:0A:04.0/2" })"), "x");
    const auto& n = c.subsystems.at(0).namespaces.at(0);
    EXPECT_EQ(n.backend, ferry::target::backend_kind::pcie);
    EXPECT_EQ(n.pcie_address, "0000:0a:04.0");  // sysfs spells it in lower case
    EXPECT_EQ(n.pcie_nsid, 2u);
    EXPECT_EQ(n.nsid, 3u);
}

TEST(config, rbd_namespace) {
    auto c = parse_config(pcie_ns(R"({ "backend": "rbd", "pool": "p", "image": "vol1", "ceph_conf": "/etc/ceph/c.conf",
                                       "block_size": 512 })"),
                          "x");
    const auto& n = c.subsystems.at(0).namespaces.at(0);
    EXPECT_EQ(n.backend, ferry::target::backend_kind::rbd);
    EXPECT_EQ(n.rbd.pool, "p");
    EXPECT_EQ(n.rbd.image, "vol1");
    EXPECT_EQ(n.rbd.ceph_conf, "/etc/ceph/c.conf");
    EXPECT_EQ(n.rbd.client, "admin");  // the default cephx user
    EXPECT_EQ(n.block_size, 512u);
    EXPECT_EQ(n.size_bytes, 0u);  // from the image
}

TEST(config, rbd_namespace_errors) {
    using kind = ferry::mgmt::config_error::kind;
    auto kind_and_path = [](const std::string& ns) -> std::pair<kind, std::string> {
        try {
            parse_config(pcie_ns(ns), "cfg.json");
        } catch (const config_error& e) {
            return {e.error_kind, e.path};
        }
        return {kind::malformed, "(accepted)"};
    };
    const std::string p = "/subsystems/0/namespaces/0";
    // Missing pool or image: invalid (HTTP 422) with the path of what is missing.
    EXPECT_EQ(kind_and_path(R"({ "backend": "rbd", "image": "i" })"), std::make_pair(kind::invalid, p + "/pool"));
    EXPECT_EQ(kind_and_path(R"({ "backend": "rbd", "pool": "p" })"), std::make_pair(kind::invalid, p + "/image"));
    EXPECT_EQ(kind_and_path(R"({ "backend": "rbd", "pool": "", "image": "i" })").second, p + "/pool");
    EXPECT_EQ(kind_and_path(R"({ "backend": "rbd", "pool": "p", "image": "i", "size": "1GiB" })").second, p + "/size");
    EXPECT_EQ(kind_and_path(R"({ "backend": "rbd", "pool": "p", "image": "i", "ceph_conf": "c.conf" })").second,
              p + "/ceph_conf");
    EXPECT_EQ(kind_and_path(R"({ "backend": "rbd", "pool": "p", "image": "i", "client": "client.admin" })").second,
              p + "/client");
    EXPECT_EQ(kind_and_path(R"({ "backend": "ram", "size": 4096, "pool": "p" })").second, p + "/pool");
}

TEST(config, pcie_namespace_errors) {
    EXPECT_NE(error_of(pcie_ns(R"({ "backend": "pcie" })")).find("/subsystems/0/namespaces/0/device: missing"),
              std::string::npos);
    for (const char* bad : {"0000:00:04.0/1", "pcie://00:04.0/1", "pcie://0000:00:04.0", "pcie://0000:00:04.8/1",
                            "pcie://0000:00:04.0/x"}) {
        auto e = error_of(pcie_ns(std::string(R"({ "backend": "pcie", "device": ")") + bad + "\" }"));
        EXPECT_NE(e.find("is not pcie://DOMAIN:BUS:DEV.FN/NSID"), std::string::npos) << bad << ": " << e;
    }
    EXPECT_NE(error_of(pcie_ns(R"({ "backend": "pcie", "device": "pcie://0000:00:04.0/0" })")).find("NSID must be"),
              std::string::npos);
    EXPECT_NE(error_of(pcie_ns(R"({ "backend": "pcie", "device": "pcie://0000:00:04.0/1", "size": "1GiB" })"))
                  .find("/size: comes from the device"),
              std::string::npos);
    EXPECT_NE(error_of(pcie_ns(R"({ "backend": "ram", "size": "1GiB", "device": "pcie://0000:00:04.0/1" })"))
                  .find("/device: only for the pcie backend"),
              std::string::npos);
}

namespace {
std::string ram_error(const std::string& sizes_json, uint64_t budget_bytes) {
    auto cfg = parse_config(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [
        {"nqn": "nqn.2026-11.io.x:a", "allow_any_host": true, "namespaces": [ )" +
                                sizes_json + " ] } ] }",
                            "cfg.json");
    try {
        ferry::mgmt::check_ram_budget(cfg, {budget_bytes, "--max-ram-mib"}, "cfg.json");
    } catch (const config_error& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST(config, ram_namespaces_beyond_the_memory_budget_are_refused) {
    EXPECT_EQ(ram_error(R"({"size": "1GiB"})", 1ull << 30), "");  // exactly fits
    EXPECT_EQ(ram_error(R"({"size": "1TiB"})", 1ull << 30),
              "cfg.json: /subsystems/0/namespaces/0/size: a RAM namespace of 1099511627776 bytes (1048576 MiB) "
              "cannot be served: ferry may use 1073741824 bytes (1024 MiB) for RAM namespaces (--max-ram-mib)");
    // The sum counts; null and file namespaces take no memory.
    EXPECT_EQ(ram_error(R"({"size": "512MiB"}, {"backend": "null", "size": "1TiB"}, {"size": "600MiB"})", 1ull << 30),
              "cfg.json: /subsystems/0/namespaces/2/size: RAM namespaces of 1166016512 bytes (1112 MiB) in all, "
              "with this one of 600 MiB cannot be served: ferry may use 1073741824 bytes (1024 MiB) for RAM "
              "namespaces (--max-ram-mib)");
    EXPECT_EQ(ram_error(R"({"size": "512MiB"}, {"backend": "null", "size": "1TiB"}, {"size": "512MiB"})", 1ull << 30),
              "");
}

TEST(config, default_ram_budget_refuses_a_tebibyte) {
    // Physical memory minus a reserve: whatever this machine has, it is not 1 TiB of RAM to spare
    // (the lab machine has 24 GiB).
    const auto b = ferry::mgmt::default_ram_budget(64ull << 20);
    EXPECT_GT(b.bytes, 0u);
    EXPECT_LT(b.bytes, 1ull << 40);
    EXPECT_NE(b.origin.find("physical memory"), std::string::npos);
    EXPECT_NE(ram_error(R"({"size": "1TiB"})", b.bytes).find("cannot be served"), std::string::npos);
}

namespace {
using ferry::mgmt::config_file;
using ferry::mgmt::parse_config_file;
using ferry::target::namespace_config;
using ferry::target::subsystem_config;

// Field by field: target_config has no operator== (and comparing through the writer would
// hide what the writer drops).
void expect_same(const ferry::target::target_config& a, const ferry::target::target_config& b) {
    ASSERT_EQ(a.listeners.size(), b.listeners.size());
    for (size_t i = 0; i < a.listeners.size(); ++i) {
        EXPECT_EQ(a.listeners[i].address, b.listeners[i].address);
        EXPECT_EQ(a.listeners[i].port, b.listeners[i].port);
        EXPECT_EQ(a.listeners[i].tls, b.listeners[i].tls);
    }
    ASSERT_EQ(a.referrals.size(), b.referrals.size());
    for (size_t i = 0; i < a.referrals.size(); ++i) {
        EXPECT_EQ(a.referrals[i].address, b.referrals[i].address);
        EXPECT_EQ(a.referrals[i].port, b.referrals[i].port);
    }
    ASSERT_EQ(a.subsystems.size(), b.subsystems.size());
    for (size_t i = 0; i < a.subsystems.size(); ++i) {
        const subsystem_config &x = a.subsystems[i], &y = b.subsystems[i];
        EXPECT_EQ(x.nqn, y.nqn);
        EXPECT_EQ(x.serial, y.serial);
        EXPECT_EQ(x.model, y.model);
        EXPECT_EQ(x.allow_any_host, y.allow_any_host);
        EXPECT_EQ(x.hosts, y.hosts);
        EXPECT_EQ(x.keys, y.keys);
        ASSERT_EQ(x.namespaces.size(), y.namespaces.size());
        for (size_t n = 0; n < x.namespaces.size(); ++n) {
            const namespace_config &p = x.namespaces[n], &q = y.namespaces[n];
            EXPECT_EQ(p.nsid, q.nsid);
            EXPECT_EQ(p.backend, q.backend);
            EXPECT_EQ(p.size_bytes, q.size_bytes);
            EXPECT_EQ(p.block_size, q.block_size);
            EXPECT_EQ(p.uuid, q.uuid);
            EXPECT_EQ(p.nguid, q.nguid);
            EXPECT_EQ(p.eui64, q.eui64);
            EXPECT_EQ(p.rbd, q.rbd);
            EXPECT_EQ(p.path, q.path);
            EXPECT_EQ(p.pcie_address, q.pcie_address);
            EXPECT_EQ(p.pcie_nsid, q.pcie_nsid);
        }
    }
}

ferry::mgmt::config_error error_object(const std::string& text) {
    try {
        parse_config_file(text, "api");
    } catch (const ferry::mgmt::config_error& e) {
        return e;
    }
    return {ferry::mgmt::config_error::kind::invalid, "none", "", "no error"};
}
}  // namespace

TEST(config, writer_round_trips) {
    ferry::target::target_config c;
    c.listeners = {{"127.0.0.1", 4420}, {"::1", 4421, ferry::transport::tls_mode::required}};
    c.referrals = {{"10.0.0.9", 8009}};
    subsystem_config s;
    s.nqn = "nqn.2026-11.io.ferry:a";
    s.serial = "SN1";
    s.model = "m";
    s.allow_any_host = false;
    s.hosts = {"nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001", "testhost"};
    namespace_config ram;
    ram.nsid = 7;
    ram.size_bytes = 3ull << 30;
    ram.uuid = std::array<uint8_t, 16>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    ram.nguid = std::array<uint8_t, 16>{0xff, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0xa0};
    ram.eui64 = std::array<uint8_t, 8>{0xde, 0xad, 0, 1, 2, 3, 4, 5};
    namespace_config odd = ram;  // a size no unit states exactly
    odd.nsid = 1;
    odd.backend = ferry::target::backend_kind::null;
    odd.block_size = 512;
    odd.size_bytes = 512 * 3;
    odd.uuid.reset();
    odd.nguid.reset();
    odd.eui64.reset();
    namespace_config file;
    file.nsid = 2;
    file.backend = ferry::target::backend_kind::file;
    file.path = "/var/lib/ferry/a.img";
    file.size_bytes = 0;
    namespace_config pcie;
    pcie.nsid = 3;
    pcie.backend = ferry::target::backend_kind::pcie;
    pcie.pcie_address = "0000:00:04.0";
    pcie.pcie_nsid = 2;
    namespace_config rbd;
    rbd.nsid = 4;
    rbd.backend = ferry::target::backend_kind::rbd;
    rbd.rbd = {"rbd", "vol1", "/etc/ceph/ceph.conf", "gw"};
    s.namespaces = {ram, odd, file, pcie, rbd};
    subsystem_config t;
    t.nqn = "testnqn";
    t.allow_any_host = true;
    c.subsystems = {s, t};
    ferry::mgmt::management_config m;
    m.port = 0;
    m.token_file = "/tmp/tok";
    m.metrics_without_token = true;

    const std::string text = ferry::mgmt::write_config(c, m);
    const config_file back = parse_config_file(text, "written");
    expect_same(c, back.target);
    EXPECT_EQ(back.management, m);
    EXPECT_EQ(ferry::mgmt::write_config(back.target, back.management), text);
    EXPECT_NE(text.find("\"3GiB\""), std::string::npos) << text;
    EXPECT_NE(text.find("\"nguid\": \"ff02030405060708090a0b0c0d0e0fa0\""), std::string::npos) << text;
}

TEST(config, nqn_rules) {
    using ferry::mgmt::nqn_in_spec_form;
    using ferry::mgmt::nqn_problem;
    EXPECT_EQ(nqn_problem("testnqn"), "");
    EXPECT_NE(nqn_problem(""), "");
    EXPECT_NE(nqn_problem(std::string(224, 'a')), "");
    EXPECT_EQ(nqn_problem(std::string(223, 'a')), "");
    EXPECT_NE(nqn_problem("nqn.2026-11.io.x:a b"), "");
    EXPECT_NE(nqn_problem("nqn.2026-11.io.x:a\tb"), "");
    EXPECT_NE(nqn_problem(std::string("nqn.2026-11.io.x:a\x01", 20)), "");
    EXPECT_TRUE(nqn_in_spec_form("nqn.2026-11.io.ferry:demo"));
    EXPECT_TRUE(nqn_in_spec_form("nqn.2014-08.org.nvmexpress:uuid:0123abcd-0000-4000-8000-00000000beef"));
    EXPECT_FALSE(nqn_in_spec_form("nqn.2014-08.org.nvmexpress:uuid:not-a-uuid"));
    EXPECT_FALSE(nqn_in_spec_form("testnqn"));
    EXPECT_FALSE(nqn_in_spec_form("nqn.26-11.io.x:a"));
    EXPECT_FALSE(nqn_in_spec_form("nqn.2026-13.io.x:a"));
}

TEST(config, non_spec_nqns_warn_comments_and_host_objects_are_read) {
    const config_file c = parse_config_file(R"({
        // a hand-written file may hold comments
        "listeners": [{"address": "127.0.0.1"}],
        "subsystems": [{"nqn": "testnqn", "hosts": ["nqn.2026-11.io.h:1", {"nqn": "nqn.2026-11.io.h:2"}]},
                       {"nqn": "nqn.2026-11.io.x:b"}],  /* no host yet: a warning, not an error */
        "management": {"port": 0, "metrics_without_token": true}
    })",
                                            "cfg.json");
    ASSERT_EQ(c.target.subsystems.size(), 2u);
    EXPECT_EQ(c.target.subsystems[0].hosts, (std::vector<std::string>{"nqn.2026-11.io.h:1", "nqn.2026-11.io.h:2"}));
    ASSERT_EQ(c.warnings.size(), 2u);
    EXPECT_EQ(c.warnings[0].rfind("/subsystems/0/nqn: 'testnqn' is not in the spec's form", 0), 0u) << c.warnings[0];
    EXPECT_EQ(c.warnings[1].rfind("/subsystems/1: no host can connect yet", 0), 0u) << c.warnings[1];
    // The same object as a request body (path ""): the warning has no empty path in front.
    ferry::mgmt::warning_list body_warnings;
    ferry::mgmt::parse_subsystem(nlohmann::json::parse(R"({"nqn": "nqn.2026-11.io.x:b"})"), "", "request",
                                 body_warnings);
    ASSERT_EQ(body_warnings.size(), 1u);
    EXPECT_EQ(body_warnings[0].rfind("no host can connect yet", 0), 0u) << body_warnings[0];
    EXPECT_EQ(c.management.port, 0);
    EXPECT_TRUE(c.management.metrics_without_token);
    EXPECT_EQ(c.management.address, "127.0.0.1");
}

TEST(config, errors_are_malformed_or_invalid_with_a_path) {
    using kind = ferry::mgmt::config_error::kind;
    struct row {
        const char* text;
        kind k;
        const char* path;
    };
    const row rows[] = {
        {R"({"listeners": [{"address": 4}]})", kind::malformed, "/listeners/0/address"},
        {R"({"listeners": [{"address": "a", "x": 1}]})", kind::malformed, "/listeners/0/x"},
        {R"({"subsystems": [{}]})", kind::malformed, "/subsystems/0/nqn"},
        {R"({"subsystems": [{"nqn": ""}]})", kind::invalid, "/subsystems/0/nqn"},
        {R"({"subsystems": [{"nqn": "a", "hosts": [{"nqn": "b c"}]}]})", kind::invalid, "/subsystems/0/hosts/0/nqn"},
        {R"({"subsystems": [{"nqn": "a", "hosts": [7]}]})", kind::malformed, "/subsystems/0/hosts/0"},
        {R"({"subsystems": [{"nqn": "a", "namespaces": [{"size": 4096, "nguid": "12"}]}]})", kind::invalid,
         "/subsystems/0/namespaces/0/nguid"},
        {R"({"subsystems": [{"nqn": "a", "namespaces": [{"size": 4096, "eui64": "0011223344556677"}, {"nsid": -1}]}]})",
         kind::invalid, "/subsystems/0/namespaces/1/nsid"},
        {R"({"management": {"port": "x"}})", kind::malformed, "/management/port"},
        {R"({"management": {"tls_cert": "/c"}})", kind::invalid, "/management/tls_key"},
        {R"({"referrals": [{"address": "10.0.0.1"}, {"address": "10.0.0.1", "port": 8009}]})", kind::invalid,
         "/referrals/1"},
        {"{", kind::malformed, ""},
    };
    for (const row& r : rows) {
        const auto e = error_object(r.text);
        EXPECT_EQ(e.error_kind, r.k) << r.text << ": " << e.what();
        EXPECT_EQ(e.path, r.path) << r.text << ": " << e.what();
    }
}

TEST(config, gateway_file_is_checked_field_by_field) {
    const std::string good = R"({"group": "g1", "name": "gw-a", "subsystem": "nqn.2026-11.io.ferry:gw",
        "ana_group": 1, "cntlid_min": 1, "cntlid_max": 1000, "pool": "rbd"})";
    auto c = ferry::mgmt::parse_gateway_config(good, "gw.json");
    EXPECT_EQ(c.group, "g1");
    EXPECT_EQ(c.name, "gw-a");
    EXPECT_EQ(c.ana_group, 1u);
    EXPECT_EQ(c.cntlid_max, 1000);
    EXPECT_EQ(c.client, "admin");
    EXPECT_EQ(c.heartbeat_ms, 1000u);
    EXPECT_EQ(c.dead_after_ms, 4000u);
    auto error = [&](const std::string& from, const std::string& to) {
        std::string text = good;
        const size_t at = text.find(from);
        if (at == std::string::npos) return std::string("test error: no ") + from;
        text.replace(at, from.size(), to);
        try {
            ferry::mgmt::parse_gateway_config(text, "gw.json");
        } catch (const ferry::mgmt::config_error& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_EQ(error(R"("cntlid_max": 1000)", R"("cntlid_max": 0)"), "gw.json: /cntlid_max: 0 is not in 1..65519");
    EXPECT_EQ(error(R"("cntlid_min": 1)", R"("cntlid_min": 2000)"), "gw.json: /cntlid_max: is below cntlid_min");
    EXPECT_EQ(error(R"("ana_group": 1)", R"("ana_group": 33)"), "gw.json: /ana_group: 33 is not in 1..32");
    EXPECT_EQ(error(R"("name": "gw-a")", R"("name": "gw a")"),
              "gw.json: /name: 'gw a': only letters, digits, '-', '_' and '.' are allowed");
    EXPECT_EQ(error(R"("pool": "rbd")", R"("pool": "rbd", "heartbeat_ms": 3000)"),
              "gw.json: /dead_after_ms: must be at least twice heartbeat_ms (a peer misses one beat without being "
              "dead)");
    EXPECT_EQ(error(R"("pool": "rbd")", R"("pool": "rbd", "owner": "x")"), "gw.json: /owner: is not a gateway field");
    EXPECT_EQ(error(R"("group": "g1", )", ""), "gw.json: /group: is required");
    EXPECT_EQ(error(R"("ana_group": 1)", R"("ana_group": "1")"), "gw.json: /ana_group: must be a non-negative integer");
}

// deploy/'s gateway examples are what deploy/gateway-group.md tells operators to copy.
TEST(config, deploy_gateway_examples_parse_and_fit_together) {
    const std::string dir = std::string(FERRY_SOURCE_DIR) + "/deploy/";
    auto a = ferry::mgmt::load_gateway_config(dir + "gateway-a.json");
    auto b = ferry::mgmt::load_gateway_config(dir + "gateway-b.json");
    EXPECT_EQ(a.group, b.group);
    EXPECT_EQ(a.subsystem, b.subsystem);
    EXPECT_NE(a.name, b.name);
    EXPECT_NE(a.ana_group, b.ana_group);
    EXPECT_TRUE(a.cntlid_max < b.cntlid_min || b.cntlid_max < a.cntlid_min);
    auto node = ferry::mgmt::load_config(dir + "gateway-node.json");
    ASSERT_EQ(node.target.subsystems.size(), 1u);
    EXPECT_EQ(node.target.subsystems[0].nqn, a.subsystem);
    std::set<uint32_t> groups;
    for (const auto& n : node.target.subsystems[0].namespaces) {
        EXPECT_EQ(n.backend, ferry::target::backend_kind::rbd);
        groups.insert(n.ana_group);
    }
    EXPECT_EQ(groups, (std::set<uint32_t>{a.ana_group, b.ana_group}));
}
