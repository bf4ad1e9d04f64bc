// DH-HMAC-CHAP against the real target over a test connection: AUTHREQ in Connect, commands
// refused before authentication, the full exchange (uni- and bidirectional, hashes, DH
// groups), failures with their reason, malformed messages, re-authentication, back-off.
#include <gtest/gtest.h>

#include "auth_host.hh"
#include "test_host.hh"

using namespace ferry;
using namespace ferry::test;

namespace {
constexpr const char* auth_nqn = "nqn.2026-11.io.ferry:auth";
constexpr const char* host_c = "nqn.2014-08.org.nvmexpress:uuid:cccccccc-2222-4333-8444-555555555555";
// dhchap_vectors.py: 32 bytes (SHA-256 transform) and 64 bytes (SHA-512 transform).
constexpr const char* key32 = "DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7:";
constexpr const char* key64 =
    "DHHC-1:03:MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub1+jQmM=:";
constexpr const char* key32_other = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:";

// "auth": host_a has a host key (32 bytes) and no controller key, host_b a host key (64 bytes)
// and a controller key, host_c is listed without keys. Plus the usual "open" subsystem.
target::target_config auth_config() {
    auto cfg = test_config();
    target::subsystem_config s;
    s.nqn = auth_nqn;
    s.hosts = {host_a, host_b, host_c};
    s.keys[host_a].dhchap_key = key32;
    s.keys[host_b].dhchap_key = key64;
    s.keys[host_b].dhchap_ctrl_key = key32_other;
    s.namespaces.push_back(
        {1, target::backend_kind::ram, 1u << 20, 4096, std::nullopt, std::nullopt, std::nullopt, {}, {}, 0, {}});
    cfg.subsystems.push_back(s);
    return cfg;
}

uint16_t connect_admin(host_conn& c, const char* host, uint32_t& dw0) {
    c.icreq();
    auto r = c.connect(auth_nqn, host, 0, 0xFFFF, 31, 0);  // no keep-alive: tests move the clock
    dw0 = r.cqe.dw0;
    // CC.EN (a Property Set: allowed before authentication, as Linux's host needs nothing else).
    if (r.status == 0) {
        EXPECT_EQ(c.property_set(nvme::reg::cc, (6u << 16) | (4u << 20) | 1u).status, 0);
    }
    return r.status;
}

constexpr uint16_t auth_required = auth::sc_auth_required | nvme::status_dnr;

// An Authentication Receive whose answer the back-off may hold (earlier failures in this
// harness come from the same address): the clock moves past the longest hold.
response held_recv(host_conn& c, dhchap_host& host, uint32_t al) {
    const uint16_t cid = host.send_recv(al);
    c.pump();
    c.conn->on_timer(env::now_ns() + 9'000'000'000);
    auto r = c.wait(cid);
    if (!r) throw std::runtime_error("closed before the answer");
    return *r;
}
}  // namespace

TEST(dhchap, host_with_key_is_challenged_and_refused_until_authenticated) {
    harness h(auth_config());
    h.tgt.set_dhchap_dhgroups({auth::dh_null});
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_a, dw0), 0);
    EXPECT_EQ(dw0 & auth::connect_authreq_atr, auth::connect_authreq_atr);  // AUTHREQ.ATR
    EXPECT_NE(dw0 & 0xFFFF, 0u);
    // Property Get (a fabrics command) works before authentication, as with Linux nvmet;
    // admin commands, keep-alive included, do not.
    EXPECT_EQ(c.property_get(nvme::reg::vs).status, 0);
    EXPECT_EQ(c.identify(1).status, auth_required);
    EXPECT_EQ(c.cmd(c.make(nvme::admin_opc::keep_alive)).status, auth_required);

    dhchap_host host(c, host_a, auth_nqn, key32);
    auto r = host.run();
    EXPECT_TRUE(r.ok) << "failure " << +r.failure << " status " << r.status;
    EXPECT_EQ(r.hash, auth::hash_sha256);  // as long as the 32-byte key
    EXPECT_EQ(r.dhgroup, auth::dh_null);
    EXPECT_EQ(c.identify(1).status, 0);
    c.conn->on_timer(env::now_ns() + 20'000'000'000);  // no time limit once authenticated
    EXPECT_FALSE(c.conn->closing());
}

TEST(dhchap, bidirectional_sha512_ffdhe2048) {
    harness h(auth_config());  // default groups: ffdhe2048 first
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_b, dw0), 0);
    ASSERT_TRUE(dw0 & auth::connect_authreq_atr);
    dhchap_host host(c, host_b, auth_nqn, key64, key32_other);
    auto r = host.run();
    EXPECT_TRUE(r.ok) << "failure " << +r.failure << " status " << r.status;
    EXPECT_TRUE(r.ctrl_verified);
    EXPECT_EQ(r.hash, auth::hash_sha512);
    EXPECT_EQ(r.dhgroup, auth::dh_ffdhe2048);
    EXPECT_EQ(c.identify(1).status, 0);
}

TEST(dhchap, unidirectional_ffdhe4096_and_the_hosts_own_hash_list) {
    harness h(auth_config());
    h.tgt.set_dhchap_dhgroups({auth::dh_ffdhe4096, auth::dh_null});
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_a, dw0), 0);
    dhchap_host host(c, host_a, auth_nqn, key32);
    host.hashes = {auth::hash_sha384};  // the key's own hash not offered: the host's first known
    auto r = host.run();
    EXPECT_TRUE(r.ok) << "failure " << +r.failure << " status " << r.status;
    EXPECT_EQ(r.hash, auth::hash_sha384);
    EXPECT_EQ(r.dhgroup, auth::dh_ffdhe4096);
}

TEST(dhchap, bidirectional_with_a_wrong_controller_key_is_refused_by_the_host) {
    harness h(auth_config());
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_b, dw0), 0);
    dhchap_host host(c, host_b, auth_nqn, key64, key32);  // expects another controller key
    auto r = host.run();
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.ctrl_verified);
    EXPECT_EQ(c.identify(1).status, auth_required);  // the Failure2 left it unauthenticated
    c.conn->on_timer(env::now_ns());
    EXPECT_TRUE(c.conn->closing());
}

TEST(dhchap, wrong_secret_gets_failure1_and_the_queue_closes) {
    harness h(auth_config());
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_a, dw0), 0);
    dhchap_host host(c, host_a, auth_nqn, key32_other);
    auto r = host.run();
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.failure, uint8_t(auth::failure::failed));
    EXPECT_EQ(c.identify(1).status, auth_required);
    c.conn->on_timer(env::now_ns());
    EXPECT_TRUE(c.conn->closing());
}

TEST(dhchap, a_host_asking_for_bidirectional_without_a_controller_key_fails) {
    harness h(auth_config());
    h.tgt.set_dhchap_dhgroups({auth::dh_null});
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_a, dw0), 0);
    dhchap_host host(c, host_a, auth_nqn, key32, key64);
    auto r = host.run();
    EXPECT_EQ(r.failure, uint8_t(auth::failure::failed));
}

TEST(dhchap, no_authentication_within_the_time_limit_closes_the_queue) {
    harness h(auth_config());
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_a, dw0), 0);
    c.conn->on_timer(env::now_ns() + 5'000'000'000);
    EXPECT_FALSE(c.conn->closing());
    c.conn->on_timer(env::now_ns() + 11'000'000'000);
    EXPECT_TRUE(c.conn->closing());
}

TEST(dhchap, hosts_without_a_key_or_not_allowed_are_never_challenged) {
    harness h(auth_config());
    {
        host_conn c(h);  // listed without keys
        uint32_t dw0 = 0;
        ASSERT_EQ(connect_admin(c, host_c, dw0), 0);
        EXPECT_EQ(dw0 >> 16, 0u);
        EXPECT_EQ(c.identify(1).status, 0);
        dhchap_host host(c, host_c, auth_nqn, key32);
        EXPECT_EQ(host.send(host.negotiate_message()).status, nvme::sc::command_sequence_error | nvme::status_dnr);
    }
    {
        host_conn c(h);  // not listed
        uint32_t dw0 = 0;
        EXPECT_EQ(connect_admin(c, "nqn.2014-08.org.nvmexpress:uuid:dddddddd-2222-4333-8444-555555555555", dw0),
                  nvme::sc::connect_invalid_host | nvme::status_dnr);
        EXPECT_EQ(dw0, 0u);
        dhchap_host host(c, host_a, auth_nqn, key32);
        EXPECT_EQ(host.send(host.negotiate_message()).status, nvme::sc::command_sequence_error | nvme::status_dnr);
    }
    {
        host_conn c(h);  // the open subsystem: no keys there
        c.icreq();
        auto r = c.connect(open_nqn, host_a, 0, 0xFFFF);
        EXPECT_EQ(r.status, 0);
        EXPECT_EQ(r.cqe.dw0 >> 16, 0u);
    }
}

TEST(dhchap, every_io_queue_authenticates_too) {
    harness h(auth_config());
    h.tgt.set_dhchap_dhgroups({auth::dh_null});
    host_conn admin(h), io(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(admin, host_a, dw0), 0);
    ASSERT_TRUE(dhchap_host(admin, host_a, auth_nqn, key32).run().ok);
    io.icreq();
    auto r = io.connect(auth_nqn, host_a, 1, static_cast<uint16_t>(dw0), 31, 0);
    ASSERT_EQ(r.status, 0);
    EXPECT_TRUE(r.cqe.dw0 & auth::connect_authreq_atr);
    auto read = io_command(nvme::io_opc::read, 1, 0, 1);
    read.cid = io.make(0).cid;
    EXPECT_EQ(io.cmd(read, {}, 4096).status, auth_required);
    ASSERT_TRUE(dhchap_host(io, host_a, auth_nqn, key32).run().ok);
    read.cid = io.make(0).cid;
    EXPECT_EQ(io.cmd(read, {}, 4096).status, 0);
}

TEST(dhchap, reauthentication_on_an_authenticated_queue) {
    harness h(auth_config());
    h.tgt.set_dhchap_dhgroups({auth::dh_ffdhe2048});
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_b, dw0), 0);
    dhchap_host host(c, host_b, auth_nqn, key64, key32_other);
    ASSERT_TRUE(host.run().ok);
    host.t_id = 2;
    auto r = host.run();
    EXPECT_TRUE(r.ok) << "failure " << +r.failure;
    EXPECT_EQ(c.identify(1).status, 0);
    // A failed re-authentication ends the queue's authentication.
    dhchap_host wrong(c, host_b, auth_nqn, key32);
    wrong.t_id = 3;
    EXPECT_EQ(wrong.run().failure, uint8_t(auth::failure::failed));
    EXPECT_EQ(c.identify(1).status, auth_required);
}

// Rotation (target::set_host_keys): the queue stays authenticated, and its next exchange uses
// the new keys: the new host key authenticates, the old one no longer does.
TEST(dhchap, reauthentication_uses_the_keys_set_since) {
    harness h(auth_config());
    h.tgt.set_dhchap_dhgroups({auth::dh_null});
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_b, dw0), 0);
    ASSERT_TRUE(dhchap_host(c, host_b, auth_nqn, key64, key32_other).run().ok);
    target::host_keys rotated;
    rotated.dhchap_key = key32;
    rotated.dhchap_ctrl_key = key64;
    h.tgt.set_host_keys(auth_nqn, host_b, rotated);
    EXPECT_EQ(c.identify(1).status, 0);
    dhchap_host renewed(c, host_b, auth_nqn, key32, key64);
    renewed.t_id = 2;
    auto r = renewed.run();
    EXPECT_TRUE(r.ok) << "failure " << +r.failure;
    EXPECT_EQ(c.identify(1).status, 0);
    dhchap_host old(c, host_b, auth_nqn, key64, key32_other);
    old.t_id = 3;
    EXPECT_EQ(old.run().failure, uint8_t(auth::failure::failed));
    EXPECT_EQ(c.identify(1).status, auth_required);
}

TEST(dhchap, malformed_messages_get_the_failure_they_deserve) {
    using F = auth::failure;
    struct tc {
        const char* what;
        std::function<std::vector<uint8_t>(dhchap_host&)> msg;
        F want;
    } cases[] = {
        {"short negotiate",
         [](dhchap_host& h) {
             auto m = h.negotiate_message();
             m.resize(40);
             return m;
         },
         F::incorrect_payload},
        {"4 bytes", [](dhchap_host&) { return std::vector<uint8_t>(4); }, F::incorrect_payload},
        {"secure channel concatenation", [](dhchap_host& h) { return h.negotiate_message(1); }, F::concat_mismatch},
        {"no descriptor", [](dhchap_host& h) { return h.negotiate_message(0, 0); }, F::incorrect_payload},
        {"napd beyond the message",
         [](dhchap_host& h) {
             auto m = h.negotiate_message();
             m[7] = 9;
             return m;
         },
         F::incorrect_payload},
        {"other protocol", [](dhchap_host& h) { return h.negotiate_message(0, 1, 2); }, F::not_usable},
        {"halen 31",
         [](dhchap_host& h) {
             auto m = h.negotiate_message();
             m[10] = 31;
             return m;
         },
         F::incorrect_payload},
        {"dhlen 255",
         [](dhchap_host& h) {
             auto m = h.negotiate_message();
             m[11] = 255;
             return m;
         },
         F::incorrect_payload},
        {"unknown hashes",
         [](dhchap_host& h) {
             h.hashes = {0, 7, 255};
             return h.negotiate_message();
         },
         F::hash_unusable},
        {"unknown groups",
         [](dhchap_host& h) {
             h.groups = {6, 9, 255};
             return h.negotiate_message();
         },
         F::dhgroup_unusable},
        {"reply first",
         [](dhchap_host&) {
             std::vector<uint8_t> m(16 + 64);
             m[0] = 1, m[1] = 2, m[4] = 1, m[6] = 32;
             return m;
         },
         F::incorrect_message},
        {"success2 first",
         [](dhchap_host&) {
             std::vector<uint8_t> m(16);
             m[0] = 1, m[1] = 4;
             return m;
         },
         F::incorrect_message},
        {"unknown type",
         [](dhchap_host&) {
             std::vector<uint8_t> m(16, 0x77);
             return m;
         },
         F::incorrect_message},
    };
    harness h(auth_config());
    for (const auto& t : cases) {
        host_conn c(h);
        uint32_t dw0 = 0;
        ASSERT_EQ(connect_admin(c, host_a, dw0), 0);
        dhchap_host host(c, host_a, auth_nqn, key32);
        EXPECT_EQ(host.send(t.msg(host)).status, 0) << t.what;
        auto r = held_recv(c, host, 512);
        ASSERT_EQ(r.status, 0) << t.what;
        EXPECT_EQ(r.data[0], 0x00) << t.what;
        EXPECT_EQ(r.data[1], 0xF1) << t.what;  // AUTH_Failure1
        EXPECT_EQ(r.data[6], 0x01) << t.what;  // reason: authentication failure
        EXPECT_EQ(r.data[7], uint8_t(t.want)) << t.what;
    }
}

TEST(dhchap, malformed_replies_fail_without_reading_past_the_message) {
    harness h(auth_config());
    h.tgt.set_dhchap_dhgroups({auth::dh_ffdhe2048});
    auto reply_case = [&](auto mutate) {
        host_conn c(h);
        uint32_t dw0 = 0;
        EXPECT_EQ(connect_admin(c, host_a, dw0), 0);
        dhchap_host host(c, host_a, auth_nqn, key32);
        EXPECT_EQ(host.send(host.negotiate_message()).status, 0);
        auto ch = held_recv(c, host, 1024);
        EXPECT_EQ(ch.data[1], 0x01);
        std::vector<uint8_t> m(16 + 64 + 256);
        m[0] = 1, m[1] = 2, m[4] = 1, m[6] = 32;
        m[10] = 0x00, m[11] = 0x01;  // DHVLEN 256
        mutate(m);
        EXPECT_EQ(host.send(m).status, 0);
        auto r = held_recv(c, host, 512);
        return r.data.size() >= 8 && r.data[1] == 0xF1 ? r.data[7] : 0;
    };
    using F = auth::failure;
    EXPECT_EQ(reply_case([](auto& m) { m[6] = 64; }), uint8_t(F::incorrect_payload));     // HL not the hash's
    EXPECT_EQ(reply_case([](auto& m) { m[11] = 0x40; }), uint8_t(F::incorrect_payload));  // DHVLEN past TL
    EXPECT_EQ(reply_case([](auto& m) { m.resize(15); }), uint8_t(F::incorrect_payload));  // short
    EXPECT_EQ(reply_case([](auto& m) { m[4] = 9; }), uint8_t(F::incorrect_payload));      // T_ID
    EXPECT_EQ(reply_case([](auto& m) { m[8] = 2; }), uint8_t(F::incorrect_payload));      // CVALID
    EXPECT_EQ(reply_case([](auto&) {}), uint8_t(F::dhgroup_unusable));                    // DH value 0
    EXPECT_EQ(reply_case([](auto& m) { m[11] = 0; }), uint8_t(F::incorrect_payload));     // no DH value
}

TEST(dhchap, command_fields_are_checked) {
    harness h(auth_config());
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_a, dw0), 0);
    dhchap_host host(c, host_a, auth_nqn, key32);
    const uint16_t invalid = nvme::sc::invalid_field | nvme::status_dnr;
    auto m = host.negotiate_message();
    EXPECT_EQ(host.send(m, 0xEA).status, invalid);           // SECP
    EXPECT_EQ(host.send(m, 0xE9, 0).status, invalid);        // SPSP0
    EXPECT_EQ(host.send(m, 0xE9, 1, 2).status, invalid);     // SPSP1
    EXPECT_EQ(host.send(m, 0xE9, 1, 1, 0).status, invalid);  // TL 0
    EXPECT_EQ(host.send(m, 0xE9, 1, 1, 50).status, nvme::sc::sgl_invalid_data_length | nvme::status_dnr);
    EXPECT_EQ(host.recv(64, 0).status, invalid);
    // AL too small for the Challenge: Invalid Field, and the exchange fails.
    EXPECT_EQ(host.send(m).status, 0);
    EXPECT_EQ(host.recv(20).status, invalid);
    c.conn->on_timer(env::now_ns());
    EXPECT_TRUE(c.conn->closing());
}

TEST(dhchap, failures_slow_down_the_address) {
    harness h(auth_config());
    h.tgt.set_dhchap_dhgroups({auth::dh_null});
    {
        host_conn c(h);
        uint32_t dw0 = 0;
        ASSERT_EQ(connect_admin(c, host_a, dw0), 0);
        EXPECT_EQ(dhchap_host(c, host_a, auth_nqn, key32_other).run().failure, uint8_t(auth::failure::failed));
    }
    host_conn c(h);
    uint32_t dw0 = 0;
    ASSERT_EQ(connect_admin(c, host_a, dw0), 0);
    dhchap_host host(c, host_a, auth_nqn, key32);
    ASSERT_EQ(host.send(host.negotiate_message()).status, 0);
    const uint64_t t0 = env::now_ns();
    const uint16_t cid = host.send_recv(512);
    c.pump();
    c.conn->on_timer(t0 + 100'000'000);  // held: 250 ms after one failure
    c.pump();
    EXPECT_FALSE(c.readable());  // no answer yet
    EXPECT_FALSE(c.conn->closing());
    c.conn->on_timer(t0 + 300'000'000);
    auto r = c.wait(cid);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 0);
    EXPECT_EQ(r->data[1], 0x01);  // the Challenge, late
    // The other numbers: doubling per failure up to 8 s, other addresses untouched.
    auth::backoff b;
    EXPECT_EQ(b.delay_ns("10.0.0.1", 0), 0u);
    b.failed("10.0.0.1", 1);
    b.failed("10.0.0.1", 2);
    EXPECT_EQ(b.delay_ns("10.0.0.1", 3), 500'000'000u);
    for (int i = 0; i < 10; ++i) b.failed("10.0.0.1", 4);
    EXPECT_EQ(b.delay_ns("10.0.0.1", 5), auth::backoff::max_delay_ns);
    EXPECT_EQ(b.delay_ns("10.0.0.2", 5), 0u);
    b.succeeded("10.0.0.1");
    EXPECT_EQ(b.delay_ns("10.0.0.1", 6), 0u);
}
