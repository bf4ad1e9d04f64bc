// Host keys in the configuration (inline and "*_file"), their validation, the views that never
// show them, and ferryd's key directory (mgmt/key_files.hh).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mgmt/config.hh"
#include "mgmt/key_files.hh"
#include "tests/unit/test_keys.hh"

namespace {
namespace fs = std::filesystem;
namespace tk = ferry::test_keys;
using json = nlohmann::json;
using ferry::mgmt::config_error;

// The base64 body of a key ("DHHC-1:01:<body>:"): what a leak would most likely show.
std::string body_of(const std::string& key) {
    const size_t a = key.find(':', key.find(':') + 1) + 1;
    return key.substr(a, key.size() - 1 - a);
}

bool holds_key(const std::string& text, const std::string& key) {
    return text.find(key) != std::string::npos || text.find(body_of(key)) != std::string::npos;
}

class key_dir_fixture : public ::testing::Test {
protected:
    fs::path dir;
    void SetUp() override {
        char tmpl[] = "/tmp/ferry-keys-test.XXXXXX";
        dir = ::mkdtemp(tmpl);
    }
    void TearDown() override { fs::remove_all(dir); }
    std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
        const fs::path p = dir / name;
        std::ofstream(p) << text;
        ::chmod(p.c_str(), mode);
        return p.string();
    }
    static unsigned mode_of(const fs::path& p) {
        struct stat st {};
        ::stat(p.c_str(), &st);
        return st.st_mode & 07777;
    }
};

const std::string host1 = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001";
const std::string host2 = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000002";
const std::string sub = "nqn.2026-11.io.ferry:keys";

std::string config_with_hosts(const json& hosts, bool any = false) {
    json j = {{"listeners", json::array({{{"address", "127.0.0.1"}, {"tls", "allowed"}}})},
              {"subsystems", json::array({{{"nqn", sub}, {"allow_any_host", any}, {"hosts", hosts}}})}};
    return j.dump();
}
}  // namespace

TEST_F(key_dir_fixture, keys_are_read_inline_and_from_files_relative_to_the_config) {
    write("h2.dhchap", std::string(tk::dhchap_03_64) + "\n");
    write("h2.psk", tk::psk_02_48);
    const std::string cfg =
        write("ferry.json",
              config_with_hosts(json::array(
                  {{{"nqn", host1},
                    {"dhchap_key", tk::dhchap_01_32},
                    {"dhchap_ctrl_key", tk::dhchap_02_48},
                    {"tls_psk", tk::psk_lab}},
                   {{"nqn", host2}, {"dhchap_key_file", "h2.dhchap"}, {"tls_psk_file", (dir / "h2.psk").string()}},
                   "nqn.2026-11.io.h:plain"})));
    const ferry::mgmt::config_file c = ferry::mgmt::load_config(cfg);
    const auto& s = c.target.subsystems.at(0);
    EXPECT_EQ(s.hosts, (std::vector<std::string>{host1, host2, "nqn.2026-11.io.h:plain"}));
    ASSERT_EQ(s.keys.size(), 2u);
    EXPECT_EQ(s.keys.at(host1).dhchap_key, tk::dhchap_01_32);
    EXPECT_EQ(s.keys.at(host1).dhchap_ctrl_key, tk::dhchap_02_48);
    EXPECT_EQ(s.keys.at(host1).tls_psk, tk::psk_lab);
    EXPECT_EQ(s.keys.at(host2).dhchap_key, tk::dhchap_03_64);  // trailing newline dropped
    EXPECT_EQ(s.keys.at(host2).dhchap_ctrl_key, "");
    EXPECT_EQ(s.keys.at(host2).tls_psk, tk::psk_02_48);
    ASSERT_EQ(c.key_files.size(), 2u);
    EXPECT_EQ(c.key_files[0].field, "dhchap_key");
    EXPECT_EQ(c.key_files[0].path, (dir / "h2.dhchap").string());
    EXPECT_TRUE(c.inline_keys);
    EXPECT_EQ(c.target.listeners.at(0).tls, ferry::transport::tls_mode::allowed);
    EXPECT_TRUE(c.warnings.empty());
}

// Every refusal names the JSON path; no message quotes the key or its base64 body.
TEST_F(key_dir_fixture, bad_keys_are_refused_with_the_path_and_never_quoted) {
    std::string bad_crc = tk::dhchap_01_32;
    bad_crc[12] = bad_crc[12] == 'A' ? 'B' : 'A';
    std::string bad_psk_crc = tk::psk_01_32;
    bad_psk_crc[20] = bad_psk_crc[20] == 'A' ? 'B' : 'A';
    write("wide.key", tk::dhchap_01_32, 0644);
    write("group.key", tk::psk_01_32, 0640);
    write("ok.key", tk::dhchap_01_32);
    using kind = config_error::kind;
    struct row {
        const char* name;
        json host;
        kind k;
        const char* path;
        std::string key;  // must not appear in the message
        const char* says;
    };
    const std::string p = "/subsystems/0/hosts/0";
    const std::vector<row> rows = {
        {"CRC", {{"nqn", host1}, {"dhchap_key", bad_crc}}, kind::invalid, "/dhchap_key", bad_crc, "DH-HMAC-CHAP"},
        {"PSK as a DH-HMAC-CHAP key",
         {{"nqn", host1}, {"dhchap_key", tk::psk_01_32}},
         kind::invalid,
         "/dhchap_key",
         tk::psk_01_32,
         "DH-HMAC-CHAP"},
        {"DH-HMAC-CHAP key as a PSK",
         {{"nqn", host1}, {"tls_psk", tk::dhchap_01_32}},
         kind::invalid,
         "/tls_psk",
         tk::dhchap_01_32,
         "TLS PSK"},
        {"PSK CRC", {{"nqn", host1}, {"tls_psk", bad_psk_crc}}, kind::invalid, "/tls_psk", bad_psk_crc, "TLS PSK"},
        {"controller key alone",
         {{"nqn", host1}, {"dhchap_ctrl_key", tk::dhchap_01_32}},
         kind::invalid,
         "/dhchap_ctrl_key",
         tk::dhchap_01_32,
         "needs dhchap_key"},
        {"key and file",
         {{"nqn", host1}, {"dhchap_key", tk::dhchap_01_32}, {"dhchap_key_file", "ok.key"}},
         kind::invalid,
         "/dhchap_key_file",
         tk::dhchap_01_32,
         "either"},
        {"empty key", {{"nqn", host1}, {"tls_psk", ""}}, kind::invalid, "/tls_psk", tk::psk_01_32, "empty"},
        {"not a string", {{"nqn", host1}, {"tls_psk", 7}}, kind::malformed, "/tls_psk", tk::psk_01_32, "string"},
        {"file readable by others",
         {{"nqn", host1}, {"dhchap_key_file", "wide.key"}},
         kind::invalid,
         "/dhchap_key_file",
         tk::dhchap_01_32,
         "0644"},
        {"file readable by the group",
         {{"nqn", host1}, {"tls_psk_file", "group.key"}},
         kind::invalid,
         "/tls_psk_file",
         tk::psk_01_32,
         "chmod 600"},
        {"missing file",
         {{"nqn", host1}, {"tls_psk_file", "nothing.key"}},
         kind::invalid,
         "/tls_psk_file",
         tk::psk_01_32,
         "cannot open"},
        {"unknown key field",
         {{"nqn", host1}, {"dhchap_secret", tk::dhchap_01_32}},
         kind::malformed,
         "/dhchap_secret",
         tk::dhchap_01_32,
         "unknown key"},
    };
    for (const row& r : rows) {
        const std::string cfg = write("bad.json", config_with_hosts(json::array({r.host})));
        try {
            ferry::mgmt::load_config(cfg);
            ADD_FAILURE() << r.name << ": accepted";
        } catch (const config_error& e) {
            EXPECT_EQ(e.error_kind, r.k) << r.name << ": " << e.what();
            EXPECT_EQ(e.path, p + r.path) << r.name << ": " << e.what();
            EXPECT_FALSE(holds_key(e.what(), r.key)) << r.name << ": " << e.what();
            EXPECT_NE(std::string(e.what()).find(r.says), std::string::npos) << r.name << ": " << e.what();
        }
    }
}

TEST_F(key_dir_fixture, a_key_file_of_another_user_is_refused) {
    const std::string f = write("other.key", tk::dhchap_01_32);
    EXPECT_EQ(ferry::mgmt::read_key_file(f), tk::dhchap_01_32);  // ferryd's own
    // Another owner: root can give the file away (the tests run as root); otherwise take a
    // file root owns.
    const std::string other = ::geteuid() == 0 ? f : "/etc/hostname";
    if (::geteuid() == 0) {
        ASSERT_EQ(::chown(f.c_str(), 65534, 65534), 0);
    }
    const std::string uid = ::geteuid() == 0 ? "65534" : "0";
    try {
        ferry::mgmt::read_key_file(other);
        ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("owned by uid " + uid), std::string::npos) << e.what();
    }
}

TEST(config_keys, a_request_body_gives_keys_inline_only) {
    try {
        ferry::mgmt::parse_host(json{{"nqn", host1}, {"dhchap_key_file", "/etc/shadow"}}, "", "request body");
        ADD_FAILURE() << "accepted";
    } catch (const config_error& e) {
        EXPECT_EQ(e.path, "/dhchap_key_file");
        EXPECT_NE(std::string(e.what()).find("configuration file only"), std::string::npos) << e.what();
    }
    const auto h = ferry::mgmt::parse_host(json{{"nqn", host1}, {"dhchap_key", tk::dhchap_00_32}}, "", "body");
    EXPECT_EQ(h.keys.dhchap_key, tk::dhchap_00_32);
    EXPECT_EQ(ferry::mgmt::parse_host(json(host2), "", "body").nqn, host2);
}

TEST(config_keys, allow_any_host_with_keys_warns) {
    const auto c = ferry::mgmt::parse_config_file(
        config_with_hosts(json::array({{{"nqn", host1}, {"dhchap_key", tk::dhchap_01_32}}}), true), "cfg.json");
    ASSERT_EQ(c.warnings.size(), 1u);
    EXPECT_NE(c.warnings[0].find("allow_any_host"), std::string::npos) << c.warnings[0];
    EXPECT_TRUE(
        ferry::mgmt::parse_config_file(config_with_hosts(json::array({host1}), true), "cfg.json").warnings.empty());
}

TEST(config_keys, patch_sets_clears_and_keeps) {
    ferry::target::host_keys k{tk::dhchap_01_32, tk::dhchap_02_48, tk::psk_lab};
    ferry::mgmt::patch_host_keys(json{{"dhchap_key", tk::dhchap_03_64}}, "body", k);
    EXPECT_EQ(k, (ferry::target::host_keys{tk::dhchap_03_64, tk::dhchap_02_48, tk::psk_lab}));
    ferry::mgmt::patch_host_keys(json{{"tls_psk", nullptr}, {"dhchap_ctrl_key", ""}}, "body", k);
    EXPECT_EQ(k, (ferry::target::host_keys{tk::dhchap_03_64, "", ""}));
    ferry::target::host_keys with_ctrl{tk::dhchap_01_32, tk::dhchap_02_48, ""};
    try {  // clearing the host key would leave the controller key alone
        ferry::mgmt::patch_host_keys(json{{"dhchap_key", nullptr}}, "body", with_ctrl);
        ADD_FAILURE() << "accepted";
    } catch (const config_error& e) {
        EXPECT_EQ(e.path, "/dhchap_ctrl_key") << e.what();
    }
    EXPECT_EQ(with_ctrl.dhchap_key, tk::dhchap_01_32);  // unchanged on an error
    for (const json& bad : {json::object(), json{{"nqn", host1}}, json{{"tls_psk", 1}}}) {
        EXPECT_THROW(ferry::mgmt::patch_host_keys(bad, "body", k), config_error) << bad.dump();
    }
}

TEST(config_keys, listener_tls_mode_is_validated_and_written) {
    const auto c = ferry::mgmt::parse_config_file(
        R"({"listeners": [{"address": "127.0.0.1", "port": 4420, "tls": "required"}, {"address": "::1"}]})", "cfg");
    EXPECT_EQ(c.target.listeners[0].tls, ferry::transport::tls_mode::required);
    EXPECT_EQ(c.target.listeners[1].tls, ferry::transport::tls_mode::none);
    EXPECT_EQ(ferry::mgmt::to_json(c.target.listeners[0])["tls"], "required");
    EXPECT_EQ(ferry::mgmt::to_json(c.target.listeners[1])["tls"], "none");
    try {
        ferry::mgmt::parse_config_file(R"({"listeners": [{"address": "127.0.0.1", "tls": "yes"}]})", "cfg");
        ADD_FAILURE() << "accepted";
    } catch (const config_error& e) {
        EXPECT_EQ(e.error_kind, config_error::kind::invalid);
        EXPECT_EQ(e.path, "/listeners/0/tls");
    }
}

TEST(config_keys, views_say_whether_keys_are_set_and_the_state_writer_only_references_files) {
    ferry::target::target_config cfg;
    ferry::target::subsystem_config s;
    s.nqn = sub;
    s.hosts = {host1, host2};
    s.keys[host1] = {tk::dhchap_01_32, tk::dhchap_02_48, tk::psk_lab};
    cfg.subsystems = {s};
    const std::string view = ferry::mgmt::config_json(cfg, {}).dump();
    for (const char* k : {tk::dhchap_01_32, tk::dhchap_02_48, tk::psk_lab}) EXPECT_FALSE(holds_key(view, k)) << view;
    const json hosts = ferry::mgmt::config_json(cfg, {})["subsystems"][0]["hosts"];
    EXPECT_EQ(hosts[0],
              (json{{"nqn", host1}, {"dhchap_key_set", true}, {"dhchap_ctrl_key_set", true}, {"tls_psk_set", true}}));
    EXPECT_EQ(
        hosts[1],
        (json{{"nqn", host2}, {"dhchap_key_set", false}, {"dhchap_ctrl_key_set", false}, {"tls_psk_set", false}}));
    EXPECT_THROW(ferry::mgmt::write_config(cfg, {}), std::logic_error);  // never inline
    ferry::mgmt::key_file_map files;
    files[{sub, host1}] = {{"dhchap_key", "keys/a"}, {"dhchap_ctrl_key", "keys/b"}, {"tls_psk", "keys/c"}};
    const json state = json::parse(ferry::mgmt::write_config(cfg, {}, files));
    EXPECT_EQ(state["subsystems"][0]["hosts"][0], (json{{"nqn", host1},
                                                        {"dhchap_key_file", "keys/a"},
                                                        {"dhchap_ctrl_key_file", "keys/b"},
                                                        {"tls_psk_file", "keys/c"}}));
    EXPECT_EQ(state["subsystems"][0]["hosts"][1], (json{{"nqn", host2}}));
}

TEST_F(key_dir_fixture, the_key_store_writes_reuses_and_deletes_key_files) {
    const std::string state = (dir / "state.json").string();
    ferry::mgmt::key_store store(state);
    ferry::target::target_config cfg;
    ferry::target::subsystem_config s;
    s.nqn = sub;
    s.hosts = {host1, host2};
    s.keys[host1] = {tk::dhchap_01_32, "", tk::psk_lab};
    s.keys[host2] = {tk::dhchap_03_64, tk::dhchap_00_32, ""};
    cfg.subsystems = {s};
    const ferry::mgmt::key_file_map first = store.prepare(cfg);
    store.committed(first);
    EXPECT_EQ(mode_of(dir / "keys"), 0700u);
    size_t files = 0;
    for (const auto& e : fs::directory_iterator(dir / "keys")) {
        ++files;
        EXPECT_EQ(mode_of(e.path()), 0600u) << e.path();
    }
    EXPECT_EQ(files, 4u);
    const std::string h1_dhchap = first.at({sub, host1}).at("dhchap_key");
    EXPECT_EQ(ferry::mgmt::read_key_file((dir / h1_dhchap).string()), tk::dhchap_01_32);
    EXPECT_TRUE(h1_dhchap.starts_with("keys/dhchap_key-")) << h1_dhchap;

    // Rotation of one key: a new file for it, the others kept, the old one deleted.
    cfg.subsystems[0].keys[host1].dhchap_key = tk::dhchap_01_32_b;
    const ferry::mgmt::key_file_map second = store.prepare(cfg);
    EXPECT_NE(second.at({sub, host1}).at("dhchap_key"), h1_dhchap);
    EXPECT_EQ(second.at({sub, host1}).at("tls_psk"), first.at({sub, host1}).at("tls_psk"));
    EXPECT_TRUE(fs::exists(dir / h1_dhchap));  // until the state file no longer references it
    store.committed(second);
    EXPECT_FALSE(fs::exists(dir / h1_dhchap));
    EXPECT_EQ(ferry::mgmt::read_key_file((dir / second.at({sub, host1}).at("dhchap_key")).string()),
              tk::dhchap_01_32_b);

    // A state that could not be written: the new files go, the old stay.
    cfg.subsystems[0].keys.erase(host2);
    cfg.subsystems[0].keys[host1].tls_psk = tk::psk_01_32_b;
    const ferry::mgmt::key_file_map third = store.prepare(cfg);
    store.abandoned(third);
    EXPECT_FALSE(fs::exists(dir / third.at({sub, host1}).at("tls_psk")));
    EXPECT_TRUE(fs::exists(dir / second.at({sub, host2}).at("dhchap_key")));
    // Written for real: the removed host's files go too.
    store.committed(store.prepare(cfg));
    EXPECT_FALSE(fs::exists(dir / second.at({sub, host2}).at("dhchap_key")));
    EXPECT_FALSE(fs::exists(dir / second.at({sub, host2}).at("dhchap_ctrl_key")));

    // A restarted store adopts the files the state references instead of writing new ones;
    // files of others in the directory are left alone.
    const ferry::mgmt::key_file_map now = store.prepare(cfg);
    store.committed(now);
    write("keys/operator-notes", "x");
    ferry::mgmt::key_store restarted(state);
    std::vector<ferry::mgmt::key_file_ref> refs;
    for (const auto& [who, fields] : now)
        for (const auto& [field, rel] : fields) refs.push_back({who.first, who.second, field, (dir / rel).string()});
    restarted.adopt(cfg, refs);
    const ferry::mgmt::key_file_map again = restarted.prepare(cfg);
    EXPECT_EQ(again, now);
    restarted.committed(again);
    for (const auto& [who, fields] : now)
        for (const auto& [field, rel] : fields) EXPECT_TRUE(fs::exists(dir / rel)) << rel;
    EXPECT_TRUE(fs::exists(dir / "keys/operator-notes"));
}

TEST_F(key_dir_fixture, a_key_directory_others_may_enter_is_refused) {
    fs::create_directory(dir / "keys");
    ::chmod((dir / "keys").c_str(), 0755);
    ferry::mgmt::key_store store((dir / "state.json").string());
    ferry::target::target_config cfg;
    ferry::target::subsystem_config s;
    s.nqn = sub;
    s.hosts = {host1};
    s.keys[host1] = {tk::dhchap_01_32, "", ""};
    cfg.subsystems = {s};
    try {
        store.prepare(cfg);
        ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("mode 0755"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(fs::is_empty(dir / "keys"));
}
