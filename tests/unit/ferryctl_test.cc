// ferryctl's parts that need no server: API URLs, percent-encoding, request bodies from
// arguments, error messages and exit classes, tables.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mgmt/config.hh"
#include "tests/unit/test_keys.hh"
#include "tools/ferryctl/bodies.hh"
#include "tools/ferryctl/render.hh"
#include "tools/ferryctl/url.hh"

namespace {

using namespace ferry::ferryctl;
using json = nlohmann::json;

TEST(FerryctlUrl, ParsesHostPortSchemeAndBasePath) {
    api_url u = parse_api_url("http://127.0.0.1:8420");
    EXPECT_FALSE(u.tls);
    EXPECT_EQ(u.host, "127.0.0.1");
    EXPECT_EQ(u.port, 8420);
    EXPECT_EQ(u.base_path, "");
    EXPECT_EQ(u.host_header(), "127.0.0.1:8420");

    u = parse_api_url("https://ferry.example.com/mgmt/");
    EXPECT_TRUE(u.tls);
    EXPECT_EQ(u.host, "ferry.example.com");
    EXPECT_EQ(u.port, 443);
    EXPECT_EQ(u.base_path, "/mgmt");
    EXPECT_EQ(u.host_header(), "ferry.example.com");

    u = parse_api_url("http://[::1]:9000");
    EXPECT_EQ(u.host, "::1");
    EXPECT_EQ(u.port, 9000);
    EXPECT_EQ(u.host_header(), "[::1]:9000");
    EXPECT_EQ(u.text(), "http://[::1]:9000");

    EXPECT_EQ(parse_api_url("http://localhost").port, 80);
}

TEST(FerryctlUrl, RefusesWhatIsNotAnApiUrl) {
    for (const char* bad : {"127.0.0.1:8420", "ftp://host", "http://", "http://:8420", "http://host:0",
                            "http://host:65536", "http://host:80x", "http://host:", "http://[::1", "http://[::1]x",
                            "http://user@host", "http://host/?q=1", "http://[host]:1"}) {
        EXPECT_THROW(parse_api_url(bad), usage_error) << bad;
    }
    try {
        parse_api_url("http://host:99999");
        FAIL();
    } catch (const usage_error& e) {
        EXPECT_STREQ(e.what(), "bad API URL 'http://host:99999': port '99999' is not a number from 1 to 65535");
    }
}

TEST(FerryctlUrl, PercentEncodesOneSegment) {
    EXPECT_EQ(percent_encode("nqn.2026-11.io.ferry:demo"), "nqn.2026-11.io.ferry:demo");
    EXPECT_EQ(percent_encode("nqn.x:a/b?c#d%e+f g"), "nqn.x:a%2Fb%3Fc%23d%25e%2Bf%20g");
    EXPECT_EQ(percent_encode("a~b_c-d.e@f"), "a~b_c-d.e@f");
    EXPECT_EQ(percent_encode("\xc3\xa9"), "%C3%A9");
    EXPECT_EQ(percent_encode(""), "");
}

TEST(FerryctlUrl, EndpointSegmentBracketsIpv6) {
    EXPECT_EQ(endpoint_segment("10.0.0.1", 4420), "10.0.0.1:4420");
    EXPECT_EQ(endpoint_segment("fd00::1", 4420), "%5Bfd00::1%5D:4420");
}

TEST(FerryctlBodies, NamespaceBodyHoldsOnlyWhatWasGiven) {
    namespace_args a;
    a.backend = "ram";
    a.size = "1GiB";
    EXPECT_EQ(namespace_body(a), json::parse(R"({"backend": "ram", "size": "1GiB"})"));

    namespace_args p;
    p.backend = "pcie";
    p.nsid = 3;
    p.pcie_address = "0000:00:04.0";
    p.pcie_nsid = 1;
    p.uuid = "6b9b3f1e-0a5e-4c57-9b0e-3f1e0a5e4c57";
    EXPECT_EQ(namespace_body(p), json::parse(R"({"backend": "pcie", "nsid": 3, "pcie_address": "0000:00:04.0",
                                               "pcie_nsid": 1, "uuid": "6b9b3f1e-0a5e-4c57-9b0e-3f1e0a5e4c57"})"));

    namespace_args f;
    f.backend = "file";
    f.path = "/srv/ns.img";
    f.size = "4096";
    f.block_size = 512;
    f.nguid = "00112233445566778899aabbccddeeff";
    f.eui64 = "0011223344556677";
    EXPECT_EQ(namespace_body(f),
              json::parse(R"({"backend": "file", "path": "/srv/ns.img", "size": 4096, "block_size": 512,
                              "nguid": "00112233445566778899aabbccddeeff", "eui64": "0011223344556677"})"));
}

TEST(FerryctlBodies, RbdNamespaceBody) {
    namespace_args r;
    r.backend = "rbd";
    r.pool = "rbd";
    r.image = "vol1";
    r.ceph_conf = "/etc/ceph/ceph.conf";
    r.client = "gw";
    EXPECT_EQ(namespace_body(r), json::parse(R"({"backend": "rbd", "pool": "rbd", "image": "vol1",
                                               "ceph_conf": "/etc/ceph/ceph.conf", "client": "gw"})"));
}

TEST(FerryctlBodies, SizeDigitsBecomeANumberUnitsStayText) {
    EXPECT_EQ(size_value("1048576"), json(1048576));
    EXPECT_EQ(size_value("2GiB"), json("2GiB"));
    EXPECT_EQ(size_value("12x"), json("12x"));
    EXPECT_EQ(size_value("99999999999999999999"), json("99999999999999999999"));  // the API says it is too big
}

TEST(FerryctlBodies, SubsystemBodies) {
    subsystem_args s;
    s.nqn = "nqn.2026-11.io.ferry:a";
    EXPECT_EQ(subsystem_body(s), json::parse(R"({"nqn": "nqn.2026-11.io.ferry:a", "allow_any_host": false})"));
    s.allow_any_host = true;
    s.model = "m";
    s.serial = "s";
    s.hosts = {"nqn.h1", "nqn.h2"};
    EXPECT_EQ(subsystem_body(s), json::parse(R"({"nqn": "nqn.2026-11.io.ferry:a", "allow_any_host": true,
        "model": "m", "serial": "s", "hosts": [{"nqn": "nqn.h1"}, {"nqn": "nqn.h2"}]})"));

    subsystem_patch_args p;
    EXPECT_THROW(subsystem_patch_body(p), usage_error);
    p.allow_any_host = false;
    EXPECT_EQ(subsystem_patch_body(p), json::parse(R"({"allow_any_host": false})"));
    p.model = "x";
    EXPECT_EQ(subsystem_patch_body(p), json::parse(R"({"allow_any_host": false, "model": "x"})"));

    EXPECT_EQ(listener_body("::1", 4420), json::parse(R"({"transport": "tcp", "address": "::1", "port": 4420})"));
    EXPECT_EQ(listener_body("::1", 4420, "required"),
              json::parse(R"({"transport": "tcp", "address": "::1", "port": 4420, "tls": "required"})"));
    EXPECT_THROW(listener_body("::1", 4420, "yes"), usage_error);
    EXPECT_EQ(referral_body("10.0.0.2", 8009), json::parse(R"({"address": "10.0.0.2", "port": 8009})"));
    EXPECT_TRUE(parse_bool("Yes", "--x"));
    EXPECT_FALSE(parse_bool("off", "--x"));
    EXPECT_THROW(parse_bool("maybe", "--x"), usage_error);
}

// Keys given on the command line or read from files (--*-file), cleared only by set-keys.
TEST(FerryctlBodies, HostKeyBodies) {
    namespace tk = ferry::test_keys;
    char tmpl[] = "/tmp/ferryctl-keys.XXXXXX";
    const std::filesystem::path dir = ::mkdtemp(tmpl);
    std::ofstream(dir / "psk") << tk::psk_lab << "\n";
    std::ofstream(dir / "empty") << "\n";
    host_key_args none;
    EXPECT_EQ(host_body("nqn.h", none), json::parse(R"({"nqn": "nqn.h"})"));
    host_key_args a;
    a.dhchap_key = tk::dhchap_01_32;
    a.dhchap_ctrl_key = tk::dhchap_02_48;
    a.tls_psk_file = (dir / "psk").string();
    EXPECT_EQ(host_body("nqn.h", a), (json{{"nqn", "nqn.h"},
                                           {"dhchap_key", tk::dhchap_01_32},
                                           {"dhchap_ctrl_key", tk::dhchap_02_48},
                                           {"tls_psk", tk::psk_lab}}));
    EXPECT_EQ(
        host_keys_patch_body(a),
        (json{{"dhchap_key", tk::dhchap_01_32}, {"dhchap_ctrl_key", tk::dhchap_02_48}, {"tls_psk", tk::psk_lab}}));
    host_key_args rotate;
    rotate.dhchap_key_file = (dir / "psk").string();  // the API checks the format, not ferryctl
    rotate.clear_tls_psk = true;
    EXPECT_EQ(host_keys_patch_body(rotate), (json{{"dhchap_key", tk::psk_lab}, {"tls_psk", nullptr}}));
    EXPECT_THROW(host_body("nqn.h", rotate), usage_error);  // add does not clear
    EXPECT_THROW(host_keys_patch_body(none), usage_error);  // nothing to change
    host_key_args both;
    both.tls_psk = tk::psk_lab;
    both.tls_psk_file = (dir / "psk").string();
    EXPECT_THROW(host_body("nqn.h", both), usage_error);
    host_key_args set_and_clear;
    set_and_clear.tls_psk = tk::psk_lab;
    set_and_clear.clear_tls_psk = true;
    EXPECT_THROW(host_keys_patch_body(set_and_clear), usage_error);
    for (const char* bad : {"empty", "missing"}) {
        host_key_args f;
        f.dhchap_key_file = (dir / bad).string();
        try {
            host_body("nqn.h", f);
            ADD_FAILURE() << bad;
        } catch (const usage_error& e) {
            EXPECT_NE(std::string(e.what()).find("--dhchap-key-file " + (dir / bad).string()), std::string::npos)
                << e.what();
        }
    }
    std::filesystem::remove_all(dir);
}

TEST(FerryctlErrors, ApiErrorNamesMethodPathStatusMessageAndJsonPath) {
    http_response res{404, "Not Found", R"({"error": "no subsystem 'nqn.x'"})"};
    try {
        throw_api_error("GET", "/api/v1/subsystems/nqn.x", res);
        FAIL();
    } catch (const api_refused& e) {
        EXPECT_EQ(e.status, 404u);
        EXPECT_STREQ(e.what(), "GET /api/v1/subsystems/nqn.x: HTTP 404 Not Found: no subsystem 'nqn.x'");
    }
    res = {422, "Unprocessable Entity", R"({"error": "'1GB': unknown unit 'GB'", "path": "/size"})"};
    try {
        throw_api_error("POST", "/api/v1/subsystems/a/namespaces", res);
        FAIL();
    } catch (const api_refused& e) {
        EXPECT_STREQ(e.what(),
                     "POST /api/v1/subsystems/a/namespaces: HTTP 422 Unprocessable Entity: '1GB': unknown unit 'GB' "
                     "(at /size)");
    }
    res = {409, "Conflict", R"({"error": "0000:00:04.0 is in use", "reasons": ["a is mounted", "b is held"]})"};
    try {
        throw_api_error("POST", "/api/v1/devices/0000:00:04.0/attach", res);
        FAIL();
    } catch (const api_refused& e) {
        EXPECT_STREQ(e.what(),
                     "POST /api/v1/devices/0000:00:04.0/attach: HTTP 409 Conflict: 0000:00:04.0 is in use\n"
                     "  a is mounted\n  b is held");
    }
    res = {502, "Bad Gateway", "<html>proxy down</html>\n"};
    try {
        throw_api_error("GET", "/api/v1/x", res);
        FAIL();
    } catch (const api_refused& e) {
        EXPECT_STREQ(e.what(), "GET /api/v1/x: HTTP 502 Bad Gateway: <html>proxy down</html>");
    }
    res = {401, "Unauthorized", R"({"error": "missing or wrong token"})"};
    EXPECT_THROW(throw_api_error("GET", "/api/v1/x", res), auth_error);
    res.status = 403;
    EXPECT_THROW(throw_api_error("GET", "/api/v1/x", res), auth_error);

    EXPECT_EQ(response_warnings(json::parse(R"({"warnings": ["a", "b", ": c", "/nqn: d"]})")),
              (std::vector<std::string>{"a", "b", "c", "/nqn: d"}));
    EXPECT_TRUE(response_warnings(json::parse(R"([1])")).empty());
}

TEST(FerryctlRender, TableAlignsColumnsWithoutTrailingBlanks) {
    EXPECT_EQ(format_table({"A", "BB", "C"}, {{"xxx", "y", ""}, {"z", "", "w"}}),
              "A    BB  C\n"
              "xxx  y\n"
              "z        w\n");
    EXPECT_EQ(format_table({"ONLY"}, {}), "ONLY\n");
    EXPECT_EQ(format_bytes(1ull << 30), "1 GiB");
    EXPECT_EQ(format_bytes(3ull << 20), "3 MiB");
    EXPECT_EQ(format_bytes(1536), "1536 B");
    EXPECT_EQ(format_bytes(0), "0 B");
}

TEST(FerryctlRender, SubsystemViews) {
    json subs = json::parse(R"([
        {"nqn": "nqn.2026-11.io.ferry:a", "allow_any_host": true, "hosts": [], "model": "ferry", "serial": "s1",
         "namespaces": [{"nsid": 1}], "controllers": [{"cntlid": 1}, {"cntlid": 2}]},
        {"nqn": "testnqn", "allow_any_host": false, "hosts": ["nqn.h"], "namespaces": []}])");
    EXPECT_EQ(subsystems_table(subs),
              "NQN                     HOSTS  NAMESPACES  CONTROLLERS  MODEL  SERIAL\n"
              "nqn.2026-11.io.ferry:a  any    1           2            ferry  s1\n"
              "testnqn                 1      0           0            -      -\n");

    json view = json::parse(R"({"nqn": "testnqn", "serial": "abc", "model": "ferry", "allow_any_host": false,
        "hosts": [{"nqn": "nqn.h1", "dhchap_key_set": true, "dhchap_ctrl_key_set": false, "tls_psk_set": true},
                  "nqn.h2"], "warnings": ["'testnqn' is not in nqn.yyyy-mm. form"],
        "namespaces": [{"nsid": 1, "backend": "ram", "size": 1073741824, "block_size": 4096, "uuid": "u1"},
                       {"nsid": 2, "backend": "pcie", "pcie_address": "0000:00:04.0", "pcie_nsid": 1, "uuid": "u2"}],
        "controllers": [{"cntlid": 3, "hostnqn": "nqn.h1", "hostid": "h", "peer": "127.0.0.1:5000",
                         "kato_ms": 5000, "queues": [{"qid": 0, "depth": 32, "reactor": 0, "connection": 7},
                                                     {"qid": 1, "depth": 128, "reactor": 1, "connection": 8}]}]})");
    EXPECT_EQ(subsystem_text(view),
              "nqn:             testnqn\n"
              "serial:          abc\n"
              "model:           ferry\n"
              "allow any host:  no\n"
              "hosts:           nqn.h1 (keys: dhchap_key, tls_psk), nqn.h2\n"
              "warning: 'testnqn' is not in nqn.yyyy-mm. form\n"
              "\nnamespaces:\n"
              "NSID  BACKEND  SIZE   BLOCK  UUID  SOURCE\n"
              "1     ram      1 GiB  4096   u1    -\n"
              "2     pcie     -      -      u2    0000:00:04.0 nsid 1\n"
              "\ncontrollers:\n"
              "CNTLID  HOSTNQN  HOSTID  PEER            KATO     QUEUES (QID:DEPTH@REACTOR)\n"
              "3       nqn.h1   h       127.0.0.1:5000  5000 ms  0:32@r0 1:128@r1\n");
}

TEST(FerryctlRender, ListenersDevicesAndStats) {
    EXPECT_EQ(
        listeners_table(json::parse(R"([{"transport": "tcp", "address": "::1", "port": 4420, "tls": "required"}])")),
        "TRANSPORT  ADDRESS  PORT  TLS\n"
        "tcp        ::1      4420  required\n");
    EXPECT_EQ(hosts_table(json::parse(R"([{"nqn": "nqn.h1", "dhchap_key_set": true, "dhchap_ctrl_key_set": false,
                                           "tls_psk_set": true}, {"nqn": "nqn.h2", "dhchap_key_set": false,
                                           "dhchap_ctrl_key_set": false, "tls_psk_set": false}])")),
              "HOSTNQN  DHCHAP_KEY  DHCHAP_CTRL_KEY  TLS_PSK\n"
              "nqn.h1   set         -                set\n"
              "nqn.h2   -           -                -\n");
    EXPECT_EQ(devices_table(json::parse(R"([{"address": "0000:00:04.0", "vendor": 6966, "device": 16,
        "driver": "nvme", "iommu_group": 5, "numa_node": -1, "block_devices": ["nvme0n1", "nvme0n2"],
        "in_use_by_ferry": false}])")),
              "ADDRESS       VENDOR:DEVICE  DRIVER  IOMMU_GROUP  NUMA  BLOCK_DEVICES    FERRY\n"
              "0000:00:04.0  1b36:0010      nvme    5            -1    nvme0n1,nvme0n2  no\n");

    json before = json::parse(R"({"subsystems": [{"nqn": "n", "namespaces": [{"nsid": 1, "reads": 10,
        "latency_us": {"buckets": [1, 2, 3]}}]}], "reactors": [{"id": 0, "busy": 0.5}]})");
    json after = before;
    after["subsystems"][0]["namespaces"][0]["reads"] = 30;
    EXPECT_EQ(stats_text(before),
              "COUNTER                            VALUE\n"
              "reactors[0].busy                   0.500\n"
              "subsystems[n].namespaces[1].reads  10\n");
    EXPECT_EQ(stats_text(after, before, 2.0),
              "COUNTER                            VALUE  PER_SECOND\n"
              "reactors[0].busy                   0.500  0\n"
              "subsystems[n].namespaces[1].reads  30     10\n");
}

TEST(FerryctlAna, ListenerOptionAndShowView) {
    EXPECT_EQ(listener_segment("10.0.0.1:4421"), "10.0.0.1:4421");
    EXPECT_EQ(listener_segment("10.0.0.1"), "10.0.0.1:4420");
    EXPECT_EQ(listener_segment("[fd00::1]:4421"), "%5Bfd00::1%5D:4421");
    EXPECT_EQ(listener_segment("fd00::1"), "%5Bfd00::1%5D:4420");
    EXPECT_THROW(listener_segment("10.0.0.1:x"), usage_error);
    EXPECT_THROW(listener_segment("10.0.0.1:70000"), usage_error);
    EXPECT_THROW(listener_segment(":4420"), usage_error);

    const json listeners = json::parse(R"([{"address": "10.0.0.1", "port": 4420, "ana": {"2": "inaccessible"}},
                                           {"address": "10.0.0.2", "port": 4420, "ana": {"5": "change"}}])");
    const json subsystems = json::parse(R"([{"nqn": "nqn.a", "namespaces": [{"nsid": 1, "ana_group": 1},
                                           {"nsid": 2, "ana_group": 2}, {"nsid": 3}]}])");
    EXPECT_EQ(ana_table(ana_view(listeners, subsystems)),
              "LISTENER       GROUP  STATE         NAMESPACES\n"
              "10.0.0.1:4420  1      optimized     nqn.a/1 nqn.a/3\n"
              "10.0.0.1:4420  2      inaccessible  nqn.a/2\n"
              "10.0.0.2:4420  1      optimized     nqn.a/1 nqn.a/3\n"
              "10.0.0.2:4420  2      optimized     nqn.a/2\n"
              "10.0.0.2:4420  5      change        -\n");
    // A gateway's listener: the group's live states, and who sets them.
    const json gateway = json::parse(R"([{"address": "10.0.0.3", "port": 4420, "ana": {},
        "ana_managed": {"by": "gateway gw-a of group g", "groups": {"1": "optimized", "2": "inaccessible"}}}])");
    const json gw_view = ana_view(gateway, subsystems);
    EXPECT_EQ(gw_view[0]["state"], "optimized");  // --json: a state name, who sets it apart
    EXPECT_EQ(gw_view[0]["set_by"], "gateway gw-a of group g");
    EXPECT_FALSE(ana_view(listeners, subsystems)[0].contains("set_by"));
    EXPECT_EQ(ana_table(gw_view),
              "LISTENER       GROUP  STATE                                   NAMESPACES\n"
              "10.0.0.3:4420  1      optimized (gateway gw-a of group g)     nqn.a/1 nqn.a/3\n"
              "10.0.0.3:4420  2      inaccessible (gateway gw-a of group g)  nqn.a/2\n");
}

// deploy/ferry.example.json is what ferryd's own validator accepts (comments included) and holds
// what it documents. tests/integration/deploy.sh checks the same with comments stripped by hand.
TEST(DeployExample, ParsesWithFerrydsValidator) {
    std::ifstream in(FERRY_SOURCE_DIR "/deploy/ferry.example.json");
    ASSERT_TRUE(in) << FERRY_SOURCE_DIR "/deploy/ferry.example.json";
    std::stringstream text;
    text << in.rdbuf();
    // The key files it references, next to it as in /var/lib/ferry.
    namespace tk = ferry::test_keys;
    char tmpl[] = "/tmp/ferry-example.XXXXXX";
    const std::filesystem::path dir = ::mkdtemp(tmpl);
    std::filesystem::create_directory(dir / "host-keys");
    for (const auto& [name, key] :
         {std::pair{"db01-host1.dhchap", tk::dhchap_01_32}, std::pair{"db01-ctrl.dhchap", tk::dhchap_03_64},
          std::pair{"db01-host1.psk", tk::psk_lab}}) {
        std::ofstream(dir / "host-keys" / name) << key << "\n";
        ::chmod((dir / "host-keys" / name).c_str(), 0600);
    }
    const ferry::mgmt::config_file cfg =
        ferry::mgmt::parse_config_file(text.str(), (dir / "ferry.example.json").string());
    std::filesystem::remove_all(dir);
    const auto& db_keys = cfg.target.subsystems.at(0).keys;
    ASSERT_EQ(db_keys.size(), 1u);
    EXPECT_EQ(db_keys.begin()->second, (ferry::target::host_keys{tk::dhchap_01_32, tk::dhchap_03_64, tk::psk_lab}));
    EXPECT_EQ(cfg.target.listeners.at(0).tls, ferry::transport::tls_mode::allowed);
    EXPECT_TRUE(cfg.management.enabled);
    EXPECT_EQ(cfg.management.port, 8420);
    EXPECT_EQ(cfg.target.listeners.size(), 2u);
    EXPECT_EQ(cfg.target.referrals.size(), 1u);
    ASSERT_EQ(cfg.target.subsystems.size(), 3u);
    EXPECT_EQ(cfg.target.subsystems[0].namespaces.at(0).backend, ferry::target::backend_kind::pcie);
    EXPECT_EQ(cfg.target.subsystems[0].namespaces.at(0).pcie_address, "0000:3b:00.0");
    EXPECT_EQ(cfg.target.subsystems[0].hosts.size(), 2u);
    EXPECT_EQ(cfg.target.subsystems[1].namespaces.at(0).backend, ferry::target::backend_kind::file);
    EXPECT_EQ(cfg.target.subsystems[2].namespaces.at(0).backend, ferry::target::backend_kind::ram);
    EXPECT_TRUE(cfg.warnings.empty());
}

}  // namespace
