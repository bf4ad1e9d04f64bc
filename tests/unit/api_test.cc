// The REST API in process: a real api_server on 127.0.0.1 (ephemeral port) over a model of the
// target (model_control below), driven by a small Beast client.
#include "mgmt/api.hh"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fstream>
#include <set>

#include "tests/unit/test_keys.hh"

namespace {
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;
using ferry::target::change_errc;
using ferry::target::change_error;

// The control API's contract, in memory.
class model_control final : public ferry::mgmt::control_plane {
public:
    ferry::target::target_config cfg;
    ferry::target::target::managed_ana_view managed;  // a gateway group's, when set

    ferry::target::subsystem_config& sub(const std::string& nqn) {
        for (auto& s : cfg.subsystems)
            if (s.nqn == nqn) return s;
        throw change_error(change_errc::not_found, "no subsystem " + nqn);
    }
    void add_subsystem(const ferry::target::subsystem_config& c) override {
        for (auto& s : cfg.subsystems)
            if (s.nqn == c.nqn) throw change_error(change_errc::conflict, "exists");
        cfg.subsystems.push_back(c);
        if (cfg.subsystems.back().serial.empty()) cfg.subsystems.back().serial = "derived";
    }
    void remove_subsystem(const std::string& nqn) override {
        sub(nqn);
        std::erase_if(cfg.subsystems, [&](auto& s) { return s.nqn == nqn; });
    }
    void update_subsystem(const std::string& nqn, const ferry::target::subsystem_patch& p) override {
        auto& s = sub(nqn);
        if (p.allow_any_host) s.allow_any_host = *p.allow_any_host;
        if (p.model) s.model = *p.model;
        if (p.serial) s.serial = *p.serial;
    }
    uint32_t add_namespace(const std::string& nqn, ferry::target::namespace_config c) override {
        auto& s = sub(nqn);
        std::set<uint32_t> used;
        for (auto& n : s.namespaces) used.insert(n.nsid);
        if (c.nsid == 0)
            while (used.count(++c.nsid)) {
            }
        else if (used.count(c.nsid))
            throw change_error(change_errc::conflict, "NSID exists");
        if (!c.uuid) c.uuid = std::array<uint8_t, 16>{uint8_t(c.nsid), 0xab};
        if (!c.nguid) c.nguid = std::array<uint8_t, 16>{0xcd, uint8_t(c.nsid)};
        s.namespaces.push_back(c);
        return c.nsid;
    }
    void remove_namespace(const std::string& nqn, uint32_t nsid) override {
        auto& s = sub(nqn);
        if (!std::erase_if(s.namespaces, [&](auto& n) { return n.nsid == nsid; }))
            throw change_error(change_errc::not_found, "no namespace");
    }
    void resize_namespace(const std::string& nqn, uint32_t nsid, uint64_t size) override {
        for (auto& n : sub(nqn).namespaces)
            if (n.nsid == nsid) {
                if (size < n.size_bytes) throw change_error(change_errc::invalid, "shrinking");
                n.size_bytes = size;
                return;
            }
        throw change_error(change_errc::not_found, "no namespace");
    }
    void add_host(const std::string& nqn, const std::string& h, const ferry::target::host_keys& k) override {
        sub(nqn).hosts.push_back(h);
        if (!k.empty()) sub(nqn).keys[h] = k;
    }
    void set_host_keys(const std::string& nqn, const std::string& h, const ferry::target::host_keys& k) override {
        auto& s = sub(nqn);
        if (std::find(s.hosts.begin(), s.hosts.end(), h) == s.hosts.end())
            throw change_error(change_errc::not_found, "no host");
        if (k.empty())
            s.keys.erase(h);
        else
            s.keys[h] = k;
    }
    void remove_host(const std::string& nqn, const std::string& h) override {
        if (!std::erase(sub(nqn).hosts, h)) throw change_error(change_errc::not_found, "no host");
        sub(nqn).keys.erase(h);
    }
    void drop_controller(const std::string& nqn, uint16_t) override {
        sub(nqn);
        throw change_error(change_errc::not_found, "no controller");
    }
    void add_listener(const ferry::target::listener_config& l) override { cfg.listeners.push_back(l); }
    void remove_listener(const std::string& a, uint16_t p) override {
        if (!std::erase_if(cfg.listeners, [&](auto& l) { return l.address == a && l.port == p; }))
            throw change_error(change_errc::not_found, "no listener");
    }
    void set_ana_state(const std::string& a, uint16_t p, uint32_t group, ferry::target::ana_state s) override {
        if (!managed.manager.empty())  // as target::set_ana_state: a gateway group runs all 32
            throw change_error(change_errc::conflict,
                               "ANA group " + std::to_string(group) + " is run by " + managed.manager);
        for (auto& l : cfg.listeners) {
            if (l.address != a || l.port != p) continue;
            if (s == ferry::target::ana_state::optimized)
                l.ana.erase(group);
            else
                l.ana[group] = s;
            return;
        }
        throw change_error(change_errc::not_found, "no listener");
    }
    void set_namespace_ana_group(const std::string& nqn, uint32_t nsid, uint32_t group) override {
        for (auto& n : sub(nqn).namespaces)
            if (n.nsid == nsid) {
                n.ana_group = group;
                return;
            }
        throw change_error(change_errc::not_found, "no namespace");
    }
    ferry::target::target::managed_ana_view managed_ana() const override { return managed; }
    void add_referral(const ferry::target::referral_config& r) override { cfg.referrals.push_back(r); }
    void remove_referral(const std::string& a, uint16_t p) override {
        if (!std::erase_if(cfg.referrals, [&](auto& r) { return r.address == a && r.port == p; }))
            throw change_error(change_errc::not_found, "no referral");
    }
    ferry::target::target_config current_config() const override { return cfg; }
    std::vector<ferry::target::controller_view> controllers(const std::string& nqn) const override {
        const_cast<model_control*>(this)->sub(nqn);
        ferry::target::controller_view v;
        v.cntlid = 1;
        v.hostnqn = "nqn.2026-11.io.h:1";
        v.peer = "127.0.0.1:5000";
        v.kato_ms = 5000;
        v.queues = {{0, 32, 0, 7}, {1, 128, 1, 8}};
        return {v};
    }
    json stats() const override { return {{"subsystems", json::array()}}; }
    std::string metrics() const override { return "# TYPE ferry_up gauge\nferry_up 1\n"; }
};

struct reply {
    unsigned status = 0;
    std::string body;
    json js;  // body as JSON when it is
    http::fields headers;
};

class api_fixture : public ::testing::Test {
protected:
    std::filesystem::path dir;
    model_control model;
    std::unique_ptr<ferry::mgmt::api_service> service;
    std::unique_ptr<ferry::mgmt::api_server> server;
    std::string token = "0123456789abcdef";

    void SetUp() override {
        char tmpl[] = "/tmp/ferry-api-test.XXXXXX";
        dir = ::mkdtemp(tmpl);
        model.cfg.listeners = {{"127.0.0.1", 4420}};
        // Not start({}): g++ 12 -O3 warns that the braced temporary's string may be used
        // uninitialized (a false positive that fails Release builds with -Werror).
        start(ferry::mgmt::api_options());
    }
    void start(ferry::mgmt::api_options o) {
        server.reset();
        o.management.port = 0;
        o.state_file = (dir / "state.json").string();
        if (!o.ram.bytes) o.ram = {1ull << 30, "test budget"};
        service = std::make_unique<ferry::mgmt::api_service>(o, model, token);
        server = std::make_unique<ferry::mgmt::api_server>(*service);
        server->start();
    }
    void TearDown() override {
        server.reset();
        std::filesystem::remove_all(dir);
    }

    reply call(const std::string& method, const std::string& target, const std::string& body = {},
               std::optional<std::string> auth = std::nullopt) {
        boost::asio::io_context ioc;
        beast::tcp_stream s(ioc);
        s.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), server->port()));
        http::request<http::string_body> req{http::string_to_verb(method), target, 11};
        if (req.method() == http::verb::unknown) req.method_string(method);
        req.set(http::field::host, "localhost");
        const std::string a = auth ? *auth : "Bearer " + token;
        if (!a.empty()) req.set(http::field::authorization, a);
        if (!body.empty()) req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        http::write(s, req);
        beast::flat_buffer buf;
        http::response_parser<http::string_body> p;
        p.body_limit(64 << 20);
        beast::error_code ec;
        http::read(s, buf, p, ec);
        reply r;
        if (ec) return r;
        r.status = p.get().result_int();
        r.body = p.get().body();
        r.headers = p.get().base();
        r.js = json::parse(r.body, nullptr, false);
        return r;
    }
    std::string state_text() {
        std::ifstream f(dir / "state.json");
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }
};

const std::string sub_a = R"({"nqn": "nqn.2026-11.io.ferry:a", "allow_any_host": true,
    "namespaces": [{"nsid": 1, "size": "64MiB"}]})";

TEST_F(api_fixture, bad_input_gets_the_documented_status_and_changes_nothing) {
    ASSERT_EQ(call("POST", "/api/v1/subsystems", sub_a).status, 201u);
    const reply before = call("GET", "/api/v1/config");
    ASSERT_EQ(before.status, 200u);
    const std::string state_before = state_text();
    ASSERT_FALSE(state_before.empty());

    struct row {
        const char* name;
        std::string method, target, body;
        std::optional<std::string> auth;
        unsigned status;
        const char* path;  // expected "path" in the error body (nullptr: none)
    };
    const std::string big(2 << 20, ' ');
    const std::string ns = "/api/v1/subsystems/nqn.2026-11.io.ferry%3Aa/namespaces";
    const std::vector<row> rows = {
        {"no token", "GET", "/api/v1/subsystems", "", "", 401, nullptr},
        {"wrong token", "GET", "/api/v1/subsystems", "", "Bearer 0123456789abcdeX", 401, nullptr},
        {"token prefix only", "GET", "/api/v1/subsystems", "", "Bearer 0123", 401, nullptr},
        {"not bearer", "GET", "/api/v1/config", "", "Basic 0123456789abcdef", 401, nullptr},
        {"no token, unknown route", "GET", "/api/v1/nothing", "", "", 401, nullptr},
        {"malformed JSON", "POST", "/api/v1/subsystems", "{\"nqn\": ", std::nullopt, 400, nullptr},
        {"empty body", "POST", "/api/v1/subsystems", "", std::nullopt, 400, nullptr},
        {"not an object", "POST", "/api/v1/subsystems", "[1]", std::nullopt, 400, "/"},
        {"unknown field", "POST", "/api/v1/subsystems", R"({"nqn": "nqn.2026-11.io.ferry:b", "colour": 1})",
         std::nullopt, 400, "/colour"},
        {"wrong type", "POST", "/api/v1/subsystems", R"({"nqn": "nqn.2026-11.io.ferry:b", "allow_any_host": 1})",
         std::nullopt, 400, "/allow_any_host"},
        {"empty NQN", "POST", "/api/v1/subsystems", R"({"nqn": ""})", std::nullopt, 422, "/nqn"},
        {"NQN with a space", "POST", "/api/v1/subsystems", R"({"nqn": "nqn.2026-11.io.ferry:a b"})", std::nullopt, 422,
         "/nqn"},
        {"NQN with a control character", "POST", "/api/v1/subsystems", "{\"nqn\": \"nqn.2026-11.io.ferry:\\u0007\"}",
         std::nullopt, 422, "/nqn"},
        {"NQN over 223 bytes", "POST", "/api/v1/subsystems",
         "{\"nqn\": \"nqn.2026-11.io.ferry:" + std::string(210, 'x') + "\"}", std::nullopt, 422, "/nqn"},
        {"duplicate subsystem", "POST", "/api/v1/subsystems", sub_a, std::nullopt, 409, "/nqn"},
        {"bad host NQN", "POST", "/api/v1/subsystems/nqn.2026-11.io.ferry%3Aa/hosts", R"({"nqn": "a b"})", std::nullopt,
         422, "/nqn"},
        {"duplicate NSID", "POST", ns, R"({"nsid": 1, "size": "1MiB"})", std::nullopt, 409, "/nsid"},
        {"NSID out of range", "POST", ns, R"({"nsid": 5000, "size": "1MiB"})", std::nullopt, 422, "/nsid"},
        {"size not a multiple", "POST", ns, R"({"size": 1000})", std::nullopt, 422, "/size"},
        {"RAM beyond the budget", "POST", ns, R"({"size": "2GiB"})", std::nullopt, 422, "/size"},
        {"namespace of a missing subsystem", "POST", "/api/v1/subsystems/nqn.2026-11.io.ferry%3Azz/namespaces",
         R"({"size": "1MiB"})", std::nullopt, 404, nullptr},
        {"shrink", "PATCH", ns + "/1", R"({"size": "1MiB"})", std::nullopt, 422, "/size"},
        {"patch unknown field", "PATCH", "/api/v1/subsystems/nqn.2026-11.io.ferry%3Aa", R"({"hosts": []})",
         std::nullopt, 400, "/hosts"},
        {"oversized body", "POST", "/api/v1/subsystems", big, std::nullopt, 413, nullptr},
        {"unknown route", "GET", "/api/v1/nothing", "", std::nullopt, 404, nullptr},
        {"unknown method", "PUT", "/api/v1/subsystems", sub_a, std::nullopt, 405, nullptr},
        {"odd method", "BREW", "/api/v1/config", "", std::nullopt, 405, nullptr},
        {"missing namespace", "DELETE", ns + "/9", "", std::nullopt, 404, nullptr},
        {"missing host", "DELETE", "/api/v1/subsystems/nqn.2026-11.io.ferry%3Aa/hosts/nqn.x", "", std::nullopt, 404,
         nullptr},
        {"missing listener", "DELETE", "/api/v1/listeners/127.0.0.1:9", "", std::nullopt, 404, nullptr},
        {"duplicate listener", "POST", "/api/v1/listeners", R"({"address": "127.0.0.1", "port": 4420})", std::nullopt,
         409, nullptr},
        {"listener port out of range", "POST", "/api/v1/listeners", R"({"address": "127.0.0.1", "port": 70000})",
         std::nullopt, 422, "/port"},
        {"ANA: not a state", "PUT", "/api/v1/listeners/127.0.0.1:4420/ana/1", R"({"state": "asleep"})", std::nullopt,
         422, "/state"},
        {"ANA: group 0", "PUT", "/api/v1/listeners/127.0.0.1:4420/ana/0", R"({"state": "inaccessible"})", std::nullopt,
         422, "/group"},
        {"ANA: group above ANAGRPMAX", "PUT", "/api/v1/listeners/127.0.0.1:4420/ana/33", R"({"state": "inaccessible"})",
         std::nullopt, 422, "/group"},
        {"ANA: no state", "PUT", "/api/v1/listeners/127.0.0.1:4420/ana/1", R"({})", std::nullopt, 400, "/state"},
        {"ANA: state not a string", "PUT", "/api/v1/listeners/127.0.0.1:4420/ana/1", R"({"state": 3})", std::nullopt,
         400, "/state"},
        {"ANA: unknown listener", "PUT", "/api/v1/listeners/127.0.0.1:9/ana/1", R"({"state": "inaccessible"})",
         std::nullopt, 404, nullptr},
        {"ANA: listener added with a bad group", "POST", "/api/v1/listeners",
         R"({"address": "127.0.0.1", "port": 4421, "ana": {"x": "inaccessible"}})", std::nullopt, 422, "/ana/x"},
        {"ANA: listener added with a bad state", "POST", "/api/v1/listeners",
         R"({"address": "127.0.0.1", "port": 4421, "ana": {"2": "gone"}})", std::nullopt, 422, "/ana/2"},
        {"ANA: change (transitional)", "PUT", "/api/v1/listeners/127.0.0.1:4420/ana/1", R"({"state": "change"})",
         std::nullopt, 400, "/state"},
        {"ANA: listener added in change", "POST", "/api/v1/listeners",
         R"({"address": "127.0.0.1", "port": 4421, "ana": {"2": "change"}})", std::nullopt, 422, "/ana/2"},
        {"ANA: namespace group out of range", "POST", ns, R"({"size": "1MiB", "ana_group": 33})", std::nullopt, 422,
         "/ana_group"},
        {"ANA: namespace moved to group 0", "PATCH", ns + "/1", R"({"ana_group": 0})", std::nullopt, 422, "/ana_group"},
        {"ANA: namespace group not a number", "PATCH", ns + "/1", R"({"ana_group": "2"})", std::nullopt, 400,
         "/ana_group"},
    };
    for (const row& r : rows) {
        const reply got = call(r.method, r.target, r.body, r.auth);
        EXPECT_EQ(got.status, r.status) << r.name << ": " << got.body;
        ASSERT_TRUE(got.js.is_object()) << r.name << ": " << got.body;
        EXPECT_TRUE(got.js.contains("error") && got.js["error"].is_string() &&
                    !got.js["error"].get<std::string>().empty())
            << r.name << ": " << got.body;
        const std::string want_path = r.path ? r.path : "(none)";
        EXPECT_EQ(got.js.value("path", "(none)"), want_path) << r.name << ": " << got.body;
        const std::string want_www = r.status == 401 ? "Bearer" : "";
        EXPECT_EQ(std::string(got.headers[http::field::www_authenticate]), want_www) << r.name;
        const std::string want_allow = r.status != 405 ? "" : r.target == "/api/v1/config" ? "GET" : "GET, POST";
        EXPECT_EQ(std::string(got.headers[http::field::allow]), want_allow) << r.name;
    }
    EXPECT_EQ(call("GET", "/api/v1/config").js, before.js);
    EXPECT_EQ(state_text(), state_before);
}

TEST_F(api_fixture, changes_are_persisted_and_read_back) {
    reply r = call("POST", "/api/v1/subsystems", R"({"nqn": "testnqn", "hosts": [{"nqn": "nqn.2026-11.io.h:1"}]})");
    ASSERT_EQ(r.status, 201u) << r.body;
    ASSERT_TRUE(r.js["warnings"].is_array());
    EXPECT_NE(r.js["warnings"][0].get<std::string>().find("not in the spec's form"), std::string::npos);
    r = call("POST", "/api/v1/subsystems/testnqn/namespaces", R"({"size": "16MiB"})");
    ASSERT_EQ(r.status, 201u) << r.body;
    EXPECT_EQ(r.js["nsid"], 1);
    EXPECT_EQ(r.js["uuid"], "01ab0000-0000-0000-0000-000000000000");
    r = call("PATCH", "/api/v1/subsystems/testnqn/namespaces/1", R"({"size": "32MiB"})");
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.js["size"], "32MiB");
    ASSERT_EQ(call("POST", "/api/v1/subsystems/testnqn/hosts", R"({"nqn": "nqn.2026-11.io.h:2"})").status, 201u);
    ASSERT_EQ(call("DELETE", "/api/v1/subsystems/testnqn/hosts/nqn.2026-11.io.h%3A1").status, 204u);
    ASSERT_EQ(call("POST", "/api/v1/listeners", R"({"address": "::1", "port": 4421})").status, 201u);
    ASSERT_EQ(call("DELETE", "/api/v1/listeners/[::1]:4421").status, 204u);
    ASSERT_EQ(call("POST", "/api/v1/referrals", R"({"address": "10.0.0.2"})").status, 201u);
    r = call("GET", "/api/v1/subsystems/testnqn");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.js["controllers"][0]["queues"][1]["depth"], 128);
    EXPECT_EQ(r.js["hosts"], json::parse(R"([{"nqn": "nqn.2026-11.io.h:2", "dhchap_key_set": false,
                                               "dhchap_ctrl_key_set": false, "tls_psk_set": false}])"));

    // The state file is the current state in the format --config reads.
    const auto file = ferry::mgmt::parse_config_file(state_text(), "state.json");
    EXPECT_EQ(ferry::mgmt::config_json(file.target, file.management), call("GET", "/api/v1/config").js);
    ASSERT_EQ(file.target.subsystems.size(), 1u);
    EXPECT_EQ(file.target.subsystems[0].namespaces.at(0).size_bytes, 32u << 20);
    EXPECT_EQ(file.target.referrals.size(), 1u);

    ASSERT_EQ(call("DELETE", "/api/v1/subsystems/testnqn").status, 204u);
    EXPECT_TRUE(ferry::mgmt::parse_config_file(state_text(), "state.json").target.subsystems.empty());
}

// Under a gateway group the listeners also show the group's live ANA states, which are not
// configuration: not in "ana", not in the state file, not accepted in a request.
TEST_F(api_fixture, listeners_show_a_gateway_groups_live_ana_states) {
    EXPECT_FALSE(call("GET", "/api/v1/listeners").js[0].contains("ana_managed"));
    model.managed.manager = "gateway gw-a of group g";
    model.managed.groups = {{1, ferry::target::ana_state::optimized}, {2, ferry::target::ana_state::inaccessible}};
    const reply r = call("GET", "/api/v1/listeners");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.js[0]["ana_managed"],
              json::parse(R"({"by": "gateway gw-a of group g", "groups": {"1": "optimized", "2": "inaccessible"}})"));
    EXPECT_EQ(r.js[0]["ana"], json::object());
    // Set by the group: a PUT is a conflict naming it, and nothing is stored.
    const reply put = call("PUT", "/api/v1/listeners/127.0.0.1:4420/ana/3", R"({"state": "inaccessible"})");
    EXPECT_EQ(put.status, 409u) << put.body;
    EXPECT_NE(put.js.value("error", "").find("gateway gw-a of group g"), std::string::npos) << put.body;
    const std::string state_after = state_text();  // the rolled-back configuration, if written
    if (!state_after.empty()) {
        EXPECT_EQ(json::parse(state_after)["listeners"][0]["ana"], json::object());
    }
    EXPECT_EQ(state_after.find("ana_managed"), std::string::npos);
    const reply post = call("POST", "/api/v1/listeners",
                            R"({"address": "127.0.0.1", "port": 4421, "ana_managed": {"by": "me", "groups": {}}})");
    EXPECT_EQ(post.status, 400u) << post.body;
    EXPECT_EQ(post.js.value("path", ""), "/ana_managed");
}

TEST_F(api_fixture, ana_change_is_refused_with_the_reason_and_nothing_changes) {
    ASSERT_EQ(call("PUT", "/api/v1/listeners/127.0.0.1:4420/ana/2", R"({"state": "inaccessible"})").status, 200u);
    const std::string state_before = state_text();
    const reply r = call("PUT", "/api/v1/listeners/127.0.0.1:4420/ana/2", R"({"state": "change"})");
    EXPECT_EQ(r.status, 400u) << r.body;
    EXPECT_EQ(r.js.value("path", ""), "/state");
    EXPECT_NE(r.js.value("error", "").find("transitional"), std::string::npos) << r.body;
    EXPECT_NE(r.js.value("error", "").find("ANATT"), std::string::npos) << r.body;
    EXPECT_EQ(call("GET", "/api/v1/listeners").js[0]["ana"], json::parse(R"({"2": "inaccessible"})"));
    EXPECT_EQ(state_text(), state_before);
    // The list of states a bad name gets does not offer it.
    const reply bad = call("PUT", "/api/v1/listeners/127.0.0.1:4420/ana/2", R"({"state": "asleep"})");
    EXPECT_EQ(bad.status, 422u);
    EXPECT_EQ(bad.js.value("error", ""),
              "'asleep' is not an ANA state (optimized, non_optimized, inaccessible, persistent_loss)");
}

TEST_F(api_fixture, ana_states_and_groups_are_set_shown_and_persisted) {
    ASSERT_EQ(call("POST", "/api/v1/subsystems", sub_a).status, 201u);
    reply r = call("PUT", "/api/v1/listeners/127.0.0.1:4420/ana/2", R"({"state": "inaccessible"})");
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.js["ana"], json::parse(R"({"2": "inaccessible"})"));
    EXPECT_EQ(call("GET", "/api/v1/listeners").js[0]["ana"], json::parse(R"({"2": "inaccessible"})"));
    r = call("PATCH", "/api/v1/subsystems/nqn.2026-11.io.ferry%3Aa/namespaces/1", R"({"ana_group": 2})");
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.js["ana_group"], 2);
    r = call("POST", "/api/v1/subsystems/nqn.2026-11.io.ferry%3Aa/namespaces", R"({"size": "1MiB", "ana_group": 3})");
    ASSERT_EQ(r.status, 201u) << r.body;
    EXPECT_EQ(r.js["ana_group"], 3);
    auto file = ferry::mgmt::parse_config_file(state_text(), "state.json");
    ASSERT_EQ(file.target.listeners.size(), 1u);
    EXPECT_EQ(file.target.listeners[0].ana,
              (std::map<uint32_t, ferry::target::ana_state>{{2, ferry::target::ana_state::inaccessible}}));
    EXPECT_EQ(file.target.subsystems[0].namespaces[0].ana_group, 2u);
    EXPECT_EQ(file.target.subsystems[0].namespaces[1].ana_group, 3u);
    // Back to optimized: the default, not listed.
    r = call("PUT", "/api/v1/listeners/127.0.0.1:4420/ana/2", R"({"state": "optimized"})");
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.js["ana"], json::object());
    file = ferry::mgmt::parse_config_file(state_text(), "state.json");
    EXPECT_TRUE(file.target.listeners[0].ana.empty());
}

TEST_F(api_fixture, a_change_that_cannot_be_persisted_is_undone) {
    ASSERT_EQ(call("POST", "/api/v1/subsystems", sub_a).status, 201u);
    const reply before = call("GET", "/api/v1/config");
    const std::string state_before = state_text();
    // A directory where the temp file should go: rename fails.
    std::filesystem::create_directory(dir / ".state.json.tmp");
    reply r = call("POST", "/api/v1/subsystems/nqn.2026-11.io.ferry%3Aa/namespaces", R"({"size": "1MiB"})");
    EXPECT_EQ(r.status, 500u) << r.body;
    EXPECT_NE(r.js.value("error", "").find("state file"), std::string::npos) << r.body;
    r = call("DELETE", "/api/v1/subsystems/nqn.2026-11.io.ferry%3Aa/namespaces/1");
    EXPECT_EQ(r.status, 500u) << r.body;
    r = call("POST", "/api/v1/subsystems", R"({"nqn": "nqn.2026-11.io.ferry:c", "allow_any_host": true})");
    EXPECT_EQ(r.status, 500u) << r.body;
    EXPECT_EQ(call("GET", "/api/v1/config").js, before.js);
    EXPECT_EQ(state_text(), state_before);
    std::filesystem::remove(dir / ".state.json.tmp");
    EXPECT_EQ(call("POST", "/api/v1/subsystems/nqn.2026-11.io.ferry%3Aa/namespaces", R"({"size": "1MiB"})").status,
              201u);
}

// Keys through the API: set with a subsystem and with a host, rotated and cleared with PATCH,
// never in an answer or the state file (which references key files: 0600 in a 0700
// directory); files of rotated keys and removed hosts are deleted; a restart adopts them.
TEST_F(api_fixture, host_keys_are_set_rotated_stored_in_key_files_and_never_returned) {
    namespace tk = ferry::test_keys;
    const std::string h1 = "nqn.2026-11.io.h:1", h2 = "nqn.2026-11.io.h:2", h3 = "nqn.2026-11.io.h:3";
    const std::vector<std::string> keys = {tk::dhchap_01_32,   tk::dhchap_02_48,   tk::psk_lab,
                                           tk::dhchap_03_64,   tk::psk_02_48,      tk::dhchap_00_32,
                                           tk::dhchap_01_32_b, tk::dhchap_03_64_b, tk::psk_01_32_b};
    std::string seen;  // every answer and state file, to grep for keys at the end
    auto body_of = [](const std::string& key) {
        const size_t a = key.find(':', key.find(':') + 1) + 1;
        return key.substr(a, key.size() - 1 - a);
    };
    auto req = [&](const std::string& m, const std::string& t, const std::string& b = {}) {
        reply r = call(m, t, b);
        seen += r.body;
        return r;
    };
    const std::string subp = "/api/v1/subsystems/nqn.2026-11.io.ferry%3Ak";
    json sub = {{"nqn", "nqn.2026-11.io.ferry:k"},
                {"hosts", json::array({{{"nqn", h1},
                                        {"dhchap_key", tk::dhchap_01_32},
                                        {"dhchap_ctrl_key", tk::dhchap_02_48},
                                        {"tls_psk", tk::psk_lab}},
                                       h2})}};
    reply r = req("POST", "/api/v1/subsystems", sub.dump());
    ASSERT_EQ(r.status, 201u) << r.body;
    EXPECT_EQ(r.js["hosts"][0],
              (json{{"nqn", h1}, {"dhchap_key_set", true}, {"dhchap_ctrl_key_set", true}, {"tls_psk_set", true}}));
    r = req("POST", subp + "/hosts",
            json{{"nqn", h3}, {"dhchap_key", tk::dhchap_03_64}, {"tls_psk", tk::psk_02_48}}.dump());
    ASSERT_EQ(r.status, 201u) << r.body;
    EXPECT_EQ(r.js,
              (json{{"nqn", h3}, {"dhchap_key_set", true}, {"dhchap_ctrl_key_set", false}, {"tls_psk_set", true}}));
    EXPECT_EQ(model.sub("nqn.2026-11.io.ferry:k").keys.at(h3).tls_psk, tk::psk_02_48);

    // Refusals: 422 with the path, the key not quoted.
    std::string bad = tk::dhchap_00_32;
    bad[12] = bad[12] == 'A' ? 'B' : 'A';
    r = req("PATCH", subp + "/hosts/" + h2, json{{"dhchap_key", bad}}.dump());
    EXPECT_EQ(r.status, 422u) << r.body;
    EXPECT_EQ(r.js.value("path", ""), "/dhchap_key");
    EXPECT_EQ(r.body.find(body_of(bad)), std::string::npos) << r.body;
    r = req("PATCH", subp + "/hosts/" + h2, json{{"dhchap_ctrl_key", tk::dhchap_00_32}}.dump());
    EXPECT_EQ(r.status, 422u) << r.body;
    EXPECT_EQ(r.js.value("path", ""), "/dhchap_ctrl_key");
    r = req("POST", subp + "/hosts", json{{"nqn", "nqn.2026-11.io.h:4"}, {"tls_psk", tk::dhchap_00_32}}.dump());
    EXPECT_EQ(r.status, 422u) << r.body;
    EXPECT_EQ(r.js.value("path", ""), "/tls_psk");
    r = req("POST", subp + "/hosts", json{{"nqn", "nqn.2026-11.io.h:4"}, {"tls_psk_file", "/etc/passwd"}}.dump());
    EXPECT_EQ(r.status, 422u) << r.body;
    EXPECT_EQ(req("PATCH", subp + "/hosts/nqn.2026-11.io.h%3A9", json{{"tls_psk", nullptr}}.dump()).status, 404u);

    const std::filesystem::path key_dir = dir / "keys";
    auto key_files = [&] {
        std::set<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(key_dir)) out.insert(e.path().filename().string());
        return out;
    };
    auto mode_of = [](const std::filesystem::path& p) {
        struct stat st {};
        ::stat(p.c_str(), &st);
        return st.st_mode & 07777;
    };
    const std::set<std::string> before_rotation = key_files();
    EXPECT_EQ(before_rotation.size(), 5u);
    EXPECT_EQ(mode_of(key_dir), 0700u);
    for (const auto& f : before_rotation) EXPECT_EQ(mode_of(key_dir / f), 0600u) << f;

    // Rotation: h1's host key replaced, its PSK cleared, its controller key kept; h2 gets keys.
    r = req("PATCH", subp + "/hosts/" + h1, json{{"dhchap_key", tk::dhchap_01_32_b}, {"tls_psk", nullptr}}.dump());
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.js,
              (json{{"nqn", h1}, {"dhchap_key_set", true}, {"dhchap_ctrl_key_set", true}, {"tls_psk_set", false}}));
    EXPECT_EQ(model.sub("nqn.2026-11.io.ferry:k").keys.at(h1),
              (ferry::target::host_keys{tk::dhchap_01_32_b, tk::dhchap_02_48, ""}));
    r = req(
        "PATCH", subp + "/hosts/" + h2,
        json{{"dhchap_key", tk::dhchap_03_64_b}, {"dhchap_ctrl_key", tk::dhchap_00_32}, {"tls_psk", tk::psk_01_32_b}}
            .dump());
    ASSERT_EQ(r.status, 200u) << r.body;
    const std::set<std::string> after_rotation = key_files();
    EXPECT_EQ(after_rotation.size(), 7u);  // 5 - 2 (h1's old host key and PSK) + 1 + 3
    size_t kept = 0;
    for (const auto& f : before_rotation) kept += after_rotation.count(f);
    EXPECT_EQ(kept, 3u);  // h1's controller key, h3's two

    r = req("GET", subp + "/hosts");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.js.size(), 3u);
    EXPECT_EQ(req("GET", subp + "/hosts/" + h3).js["dhchap_key_set"], true);
    req("GET", subp);
    req("GET", "/api/v1/subsystems");
    req("GET", "/api/v1/config");
    seen += state_text();
    for (const auto& k : keys) {
        EXPECT_EQ(seen.find(k), std::string::npos) << k;
        EXPECT_EQ(seen.find(body_of(k)), std::string::npos) << k;
    }
    const json state = json::parse(state_text());
    EXPECT_TRUE(state["subsystems"][0]["hosts"][0]["dhchap_key_file"].get<std::string>().starts_with("keys/"));

    // A restart: the state file read back gives the same keys, and ferryd keeps their files.
    const auto file = ferry::mgmt::load_config((dir / "state.json").string());
    EXPECT_EQ(file.target.subsystems[0].keys, model.cfg.subsystems[0].keys);
    model.cfg = file.target;
    ferry::mgmt::api_options o;
    o.key_files = file.key_files;
    start(o);
    ASSERT_EQ(req("POST", subp + "/namespaces", R"({"size": "1MiB"})").status, 201u);
    EXPECT_EQ(key_files(), after_rotation);

    // Removing a host deletes its key files once the state file no longer references them.
    ASSERT_EQ(req("DELETE", subp + "/hosts/" + h2).status, 204u);
    EXPECT_EQ(key_files().size(), 4u);
    ASSERT_EQ(req("DELETE", subp).status, 204u);
    EXPECT_TRUE(key_files().empty());
}

TEST_F(api_fixture, public_routes_and_documents) {
    EXPECT_EQ(call("GET", "/healthz", "", "").status, 401u);
    EXPECT_EQ(call("GET", "/metrics", "", "").status, 401u);
    EXPECT_EQ(call("GET", "/", "", "").status, 200u);  // the page asks for the token itself
    reply r = call("GET", "/metrics");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.headers[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(call("GET", "/api/v1/openapi.json").js["openapi"].get<std::string>().substr(0, 2), "3.");
    ferry::mgmt::api_options o;
    o.management.metrics_without_token = true;
    start(o);
    EXPECT_EQ(call("GET", "/healthz", "", "").js["status"], "ok");
    EXPECT_EQ(call("GET", "/metrics", "", "").status, 200u);
    EXPECT_EQ(call("GET", "/api/v1/stats", "", "").status, 401u);
}

TEST_F(api_fixture, connections_beyond_the_cap_get_503_and_idle_ones_are_closed) {
    ferry::mgmt::api_options o;
    o.max_connections = 2;
    o.request_timeout = std::chrono::milliseconds(300);
    start(o);
    boost::asio::io_context ioc;
    const boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"), server->port());
    std::vector<std::unique_ptr<beast::tcp_stream>> idle;
    for (int i = 0; i < 2; ++i) {
        idle.push_back(std::make_unique<beast::tcp_stream>(ioc));
        idle.back()->connect(ep);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(call("GET", "/healthz").status, 503u);
    // The idle ones time out and free their slots.
    char c;
    beast::error_code ec;
    idle[0]->socket().read_some(boost::asio::buffer(&c, 1), ec);
    EXPECT_TRUE(ec) << "an idle client was not closed";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(call("GET", "/healthz").status, 200u);
}

TEST(api, token_file_is_created_0600_and_read_back) {
    char tmpl[] = "/tmp/ferry-token-test.XXXXXX";
    const std::filesystem::path d = ::mkdtemp(tmpl);
    const std::string path = (d / "api-token").string();
    bool created = false;
    const std::string t = ferry::mgmt::load_or_create_token(path, created);
    EXPECT_TRUE(created);
    EXPECT_EQ(t.size(), 64u);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(ferry::mgmt::load_or_create_token(path, created), t);
    EXPECT_FALSE(created);
    std::filesystem::remove_all(d);
}

// Every route of the server is in mgmt/openapi.json with the same methods and status codes,
// and the document has nothing the server does not serve.
TEST_F(api_fixture, openapi_document_matches_the_route_table) {
    const json doc = json::parse(ferry::mgmt::openapi_document());
    std::set<std::string> from_server, from_doc;
    for (const auto& r : service->routes())
        for (unsigned s : r.statuses) from_server.insert(r.pattern + " " + r.method + " " + std::to_string(s));
    for (auto p = doc.at("paths").begin(); p != doc.at("paths").end(); ++p)
        for (auto m = p->begin(); m != p->end(); ++m) {
            if (m.key() == "parameters") continue;
            std::string method = m.key();
            std::transform(method.begin(), method.end(), method.begin(), ::toupper);
            for (auto s = m->at("responses").begin(); s != m->at("responses").end(); ++s)
                from_doc.insert(p.key() + " " + method + " " + s.key());
        }
    for (const auto& x : from_server) EXPECT_TRUE(from_doc.count(x)) << "served but not documented: " << x;
    for (const auto& x : from_doc) EXPECT_TRUE(from_server.count(x)) << "documented but not served: " << x;
    EXPECT_GT(from_server.size(), 100u);
}

}  // namespace

namespace {
// A sysfs tree with two NVMe controllers (cf. pci_test.cc): 04.0 on nvme with a mounted
// partition, 05.0 on vfio-pci.
struct device_tree {
    std::filesystem::path root;
    device_tree() {
        char tmpl[] = "/tmp/ferry-api-sysfs.XXXXXX";
        root = ::mkdtemp(tmpl);
        for (const char* drv : {"nvme", "vfio-pci", "e1000e"})
            std::filesystem::create_directories(root / "bus/pci/drivers" / drv);
        std::filesystem::create_directories(root / "bus/pci/devices");
        add("0000:00:04.0", "nvme");
        std::filesystem::create_directories(root / "devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1");
        std::filesystem::create_directories(root / "block/nvme0n1/holders");
        std::filesystem::create_directories(root / "block/nvme0n1/nvme0n1p1/holders");
        add("0000:00:05.0", "vfio-pci");
        std::ofstream(root / "mounts") << "/dev/nvme0n1p1 /boot ext4 rw 0 0\n";
    }
    ~device_tree() { std::filesystem::remove_all(root); }
    // The device's driver_override as ferryd left it ("(null)": never written).
    std::string driver_override(const std::string& bdf) const {
        std::ifstream f(root / "devices/pci0000:00" / bdf / "driver_override");
        std::string ov;
        std::getline(f, ov);
        return ov;
    }
    // group >= 0: a member of that IOMMU group
    void add(const std::string& bdf, const std::string& driver, int group = -1) {
        const auto d = root / "devices/pci0000:00" / bdf;
        std::filesystem::create_directories(d);
        std::filesystem::create_directory_symlink("../../../devices/pci0000:00/" + bdf, root / "bus/pci/devices" / bdf);
        std::ofstream(d / "class") << "0x010802\n";
        std::ofstream(d / "vendor") << "0x1b36\n";
        std::ofstream(d / "device") << "0x0010\n";
        std::ofstream(d / "numa_node") << "0\n";
        std::ofstream(d / "driver_override") << "(null)\n";
        std::filesystem::create_directory_symlink("../../../bus/pci/drivers/" + driver, d / "driver");
        if (group >= 0) {
            const std::string g = "kernel/iommu_groups/" + std::to_string(group);
            std::filesystem::create_directories(root / g / "devices");
            std::filesystem::create_directory_symlink("../../../" + g, d / "iommu_group");
            std::filesystem::create_directory_symlink("../../../../devices/pci0000:00/" + bdf,
                                                      root / g / "devices" / bdf);
        }
    }
};
}  // namespace

TEST_F(api_fixture, devices_show_use_and_refuse_what_is_in_use) {
    device_tree t;
    ferry::target::subsystem_config s;
    s.nqn = "nqn.2026-11.io.ferry:ssd";
    s.allow_any_host = true;
    ferry::target::namespace_config n;
    n.backend = ferry::target::backend_kind::pcie;
    n.pcie_address = "0000:00:05.0";
    n.pcie_nsid = 1;
    s.namespaces = {n};
    model.cfg.subsystems = {s};
    ferry::mgmt::api_options o;
    o.sysfs = t.root.string();
    o.mounts_file = (t.root / "mounts").string();
    start(o);

    reply r = call("GET", "/api/v1/devices");
    ASSERT_EQ(r.status, 200u) << r.body;
    ASSERT_EQ(r.js.size(), 2u) << r.body;
    EXPECT_EQ(r.js[0]["address"], "0000:00:04.0");
    EXPECT_EQ(r.js[0]["driver"], "nvme");
    EXPECT_EQ(r.js[0]["vendor"], "1b36");
    EXPECT_EQ(r.js[0]["in_use_by_ferry"], false);
    EXPECT_EQ(r.js[1]["driver"], "vfio-pci");
    EXPECT_EQ(r.js[1]["in_use_by_ferry"], true);

    r = call("POST", "/api/v1/devices/0000:00:04.0/attach");
    EXPECT_EQ(r.status, 409u) << r.body;
    ASSERT_TRUE(r.js["reasons"].is_array()) << r.body;
    EXPECT_NE(r.js["reasons"][0].get<std::string>().find("is mounted on /boot"), std::string::npos) << r.body;
    r = call("POST", "/api/v1/devices/0000:00:05.0/detach");
    EXPECT_EQ(r.status, 409u) << r.body;
    EXPECT_EQ(r.js["reasons"][0], "namespace 1 of subsystem nqn.2026-11.io.ferry:ssd is served from it") << r.body;
    EXPECT_EQ(call("POST", "/api/v1/devices/0000:00:09.0/attach").status, 404u);
    EXPECT_EQ(call("POST", "/api/v1/devices/not-a-bdf/detach").status, 404u);
    // Nothing was written: 04.0 is still on nvme with no override.
    EXPECT_EQ(t.driver_override("0000:00:04.0"), "(null)");
}

// A device whose IOMMU group holds another device on a kernel driver cannot be used by vfio:
// 409 with the conflicting device as the reason (it was a 500), and nothing is written.
TEST_F(api_fixture, attach_refuses_a_device_sharing_its_iommu_group_with_another_driver) {
    device_tree t;
    t.add("0000:00:06.0", "nvme", 6);
    t.add("0000:00:07.0", "e1000e", 6);
    ferry::mgmt::api_options o;
    o.sysfs = t.root.string();
    o.mounts_file = (t.root / "mounts").string();
    start(o);
    reply r = call("POST", "/api/v1/devices/0000:00:06.0/attach");
    EXPECT_EQ(r.status, 409u) << r.body;
    ASSERT_TRUE(r.js["reasons"].is_array()) << r.body;
    EXPECT_EQ(r.js["reasons"][0], "0000:00:07.0 (e1000e)") << r.body;
    EXPECT_EQ(t.driver_override("0000:00:06.0"), "(null)");
}
