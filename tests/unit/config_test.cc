#include <gtest/gtest.h>

#include "mgmt/config.hh"

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
    EXPECT_EQ(error_of(R"({"listeners": [], "subsystems": []})"), "cfg.json: /listeners: at least one listener is needed");
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1", "port": 70000}], "subsystems": []})"),
              "cfg.json: /listeners/0/port: 70000 is out of range [1, 65535]");
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [{"nqn": "bad", "allow_any_host": true}]})"),
              "cfg.json: /subsystems/0/nqn: 'bad' is not an NQN (nqn.yyyy-mm.reverse.domain:name, at most 223 bytes)");
    EXPECT_EQ(
        error_of(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [{"nqn": "nqn.2026-11.io.x:a", "allow_any_host": true,
                 "namespaces": [{"size": "1GB"}]}]})"),
        "cfg.json: /subsystems/0/namespaces/0/size: '1GB': unknown unit 'GB' (use B, KiB, MiB, GiB or TiB)");
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [], "extra": 1})"),
              "cfg.json: /extra: unknown key (expected one of: listeners, subsystems)");
    EXPECT_NE(error_of("{ not json").find("cfg.json: not valid JSON"), std::string::npos);
}

TEST(config, rejects_duplicates_and_unreachable_subsystems) {
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [{"nqn": "nqn.2026-11.io.x:a",
                 "allow_any_host": true, "namespaces": [{"nsid": 1, "size": 4096}, {"nsid": 1, "size": 4096}]}]})"),
              "cfg.json: /subsystems/0/namespaces/1/nsid: duplicate NSID 1");
    EXPECT_EQ(error_of(R"({"listeners": [{"address": "127.0.0.1"}], "subsystems": [{"nqn": "nqn.2026-11.io.x:a"}]})"),
              "cfg.json: /subsystems/0: no host could connect: set \"allow_any_host\": true or list \"hosts\"");
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
