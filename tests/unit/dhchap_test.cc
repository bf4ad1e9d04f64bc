// DH-HMAC-CHAP: secret parsing and the protocol's computations (known answers from
// dhchap_vectors.py next to this file, which uses only Python's hashlib/hmac/zlib).
#include "target/dhchap.hh"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <stdexcept>
#include <string>

#include "target/auth.hh"

using ferry::target::parse_dhchap_secret;

namespace {
std::vector<uint8_t> counting(size_t n, uint8_t start) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + i);
    return v;
}

// The message of the exception parse_dhchap_secret throws ("" if it parsed).
std::string parse_error(const std::string& text) {
    try {
        parse_dhchap_secret(text);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}
}  // namespace

// dhchap_vectors.py, "# secrets".
TEST(dhchap_secret, parses_every_key_length_and_transform) {
    struct tc {
        const char* text;
        uint8_t transform;
        size_t len;
        uint8_t start;
    } cases[] = {
        {"DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:", 0, 32, 0x00},
        {"DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7:", 1, 32, 0x10},
        {"DHHC-1:02:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktMTU5PhcdKRQ==:", 2, 48, 0x20},
        {"DHHC-1:03:MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub1+jQmM=:", 3,
         64, 0x30},
        // The kernel takes any key length with any transform hash.
        {"DHHC-1:01:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl9gYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+fx/Gj1o=:", 1,
         64, 0x40},
        // Without the closing ':' (the kernel takes that too).
        {"DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7", 1, 32, 0x10},
    };
    for (const auto& t : cases) {
        auto s = parse_dhchap_secret(t.text);
        EXPECT_EQ(s.transform, t.transform) << t.text;
        EXPECT_EQ(s.key, counting(t.len, t.start)) << t.text;
    }
}

TEST(dhchap_secret, refuses_malformed_text_without_quoting_it) {
    const std::string good = "DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7:";
    struct tc {
        std::string text;
        const char* says;
    } cases[] = {
        {"", "does not start"},
        {"DHHC-2:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7:", "does not start"},
        {"DHHC-1:04:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7:", "transform hash"},
        {"DHHC-1:1:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7:", "transform hash"},
        {"DHHC-1:01:", "bad length"},
        {"DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow:", "bad length"},
        {"DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/o!7:", "not valid base64"},
        {"DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/=w7:", "not valid base64"},
        {"DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7AAAA:", "not 32, 48 or 64"},  // 39 bytes
        {"DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9B/ow7:", "CRC-32"},                // one key bit flipped
        {"DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow6:", "CRC-32"},                // CRC flipped
    };
    for (const auto& t : cases) {
        std::string e = parse_error(t.text);
        EXPECT_NE(e.find(t.says), std::string::npos) << "'" << t.text << "' -> '" << e << "'";
        // Never the key's text (its base64 part, nor a long run of it).
        EXPECT_EQ(e.find("EBESEx"), std::string::npos) << e;
    }
    EXPECT_EQ(parse_error(good), "");
}

// ---- the protocol's computations: dhchap_vectors.py (output in dhchap_vectors.txt) ----
namespace {
namespace auth = ferry::target::auth;
const std::string kat_hostnqn = "nqn.2014-08.org.nvmexpress:uuid:0c9e5f4e-8e33-4c1b-9d2a-6f6c1e2b3a4d";
const std::string kat_subnqn = "nqn.2026-11.io.ferry:auth";

std::string hex(const std::vector<uint8_t>& v) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (uint8_t b : v) s += {d[b >> 4], d[b & 15]};
    return s;
}
std::vector<uint8_t> unhex(const std::string& s) {
    std::vector<uint8_t> v;
    for (size_t i = 0; i + 1 < s.size(); i += 2)
        v.push_back(static_cast<uint8_t>(std::stoi(s.substr(i, 2), nullptr, 16)));
    return v;
}
ferry::target::dhchap_secret host_secret() {  // hh=1, 32 bytes from 0x10
    return parse_dhchap_secret("DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7:");
}
ferry::target::dhchap_secret ctrl_secret() {  // hh=3, 64 bytes from 0x30
    return parse_dhchap_secret(
        "DHHC-1:03:MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub1+jQmM=:");
}
}  // namespace

// "# transform"
TEST(dhchap_kat, transform_key_with_host_and_subsystem_nqn) {
    EXPECT_EQ(hex(auth::transform_key(host_secret(), kat_hostnqn).b),
              "834401ffb7b55b5b013501834fc849d95bb33223c57aa51c1b8ecc00376935ab");
    EXPECT_EQ(hex(auth::transform_key(ctrl_secret(), kat_subnqn).b),
              "971576dcda031dcc832f3c913823f451e4a8717f804518824cb17833659dacc698a4f077b5e718643239f26f6b2a8bafe33e98"
              "67e86f20138a02f9b5ad1c331f");
    // Transform 00: the key itself.
    auto plain = parse_dhchap_secret("DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:");
    EXPECT_EQ(auth::transform_key(plain, kat_hostnqn).b, counting(32, 0));
}

// "# responses"
TEST(dhchap_kat, host_and_controller_responses) {
    auto kh = auth::transform_key(host_secret(), kat_hostnqn);
    EXPECT_EQ(hex(auth::host_response(auth::hash_sha256, kh.b, counting(32, 0xA0), 0x11223344, 0x0102, 0, kat_hostnqn,
                                      kat_subnqn)),
              "ad79fd30df7be8cfce67959b15317b33f30ffc42f3ed8dbe947d0c7051533892");
    auto kc = auth::transform_key(ctrl_secret(), kat_subnqn);
    EXPECT_EQ(hex(auth::ctrl_response(auth::hash_sha512, kc.b, counting(64, 0xC0), 0x55667788, 0x0102, 0, kat_subnqn,
                                      kat_hostnqn)),
              "7794ff5900858b1bf409b7bc44bd6859f62e0980d2de335299c29ad8a019fe749239fadd8d3377ec5eaed40c0e42018a63f409c0"
              "b7af1a15b8e3103efe5b5ac9");
}

// "# ffdhe2048 with fixed private values": the controller's private value is 32 bytes counting
// from 0x01, the host's public value is 2^(32 bytes counting from 0x41) mod p.
TEST(dhchap_kat, ffdhe2048_session_key_and_augmented_challenge) {
    auto ctrl = auth::dh_key::from_private(auth::dh_ffdhe2048, counting(32, 0x01));
    const auto host_public = unhex(
        "236764e6b1b9c26e2895826aabbc23188b8414ec6bf63987a068d3ef417938e1ed6e3ff157e4aa24488518d9e4540cec5ed8bee54117c4"
        "cda6a2c8e678b2ee2ec27072439b4b569e16ab80abd8abe5ae7cafe11304b3922fc1f2646e4231a03c2554bf62774d0bbbba2e1ed0ff42"
        "af17907a47cff6b91ad561d66f667ff16baee91bdfebe76757298b8c7fb715a3033e2ee48d6ba9a4afc0f78eac16a428ef343dac5cf790"
        "bc752482a2f3f0e901b03e8ba9755283b43fdb6284e6c739d4a1e1bd647da9481cc5f16d9a4567e63660601932955a570f7955da890520"
        "cd3f5940eba47c0b4d3f3d8f88303b16085c15969b67011ccef86ee02a828e580c3619e3");
    ASSERT_EQ(host_public.size(), 256u);
    auto skey = ctrl.derive(host_public);
    ASSERT_TRUE(skey);
    ASSERT_EQ(skey->b.size(), 256u);  // padded to the group size
    std::vector<uint8_t> digest(32);
    unsigned n = 0;
    EVP_Digest(skey->b.data(), skey->b.size(), digest.data(), &n, EVP_sha256(), nullptr);
    EXPECT_EQ(hex(digest), "e0f9e5c4e867239e3fd9a2355b463030e7dfd5cb449c3bac1e2c30b6f8fd4804");
    EXPECT_EQ(hex(auth::augmented_challenge(auth::hash_sha256, skey->b, counting(32, 0xA0))),
              "54274ec7e0d329a134924c5bd9e344311aebc91c7077b29534035276580edc8f");
}

TEST(dhchap_dh, refuses_peer_values_out_of_range_or_of_the_wrong_size) {
    auto ctrl = auth::dh_key::generate(auth::dh_ffdhe2048);
    EXPECT_EQ(ctrl.public_value().size(), 256u);
    std::vector<uint8_t> v(256, 0);
    EXPECT_FALSE(ctrl.derive(v));  // 0
    v[255] = 1;
    EXPECT_FALSE(ctrl.derive(v));                                // 1
    EXPECT_FALSE(ctrl.derive(std::vector<uint8_t>(256, 0xFF)));  // > p
    EXPECT_FALSE(ctrl.derive(std::vector<uint8_t>(255, 0x22)));  // short
    // Two fresh key pairs agree.
    auto host = auth::dh_key::generate(auth::dh_ffdhe2048);
    auto a = ctrl.derive(host.public_value()), b = host.derive(ctrl.public_value());
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->b, b->b);
}
