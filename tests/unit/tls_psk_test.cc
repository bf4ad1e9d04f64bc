// PSK interchange parsing, PSK identities and the TLS PSK derivations. The expected values
// come from tests/unit/vectors/tls_psk_vectors.py (hashlib/hmac/zlib, written from RFC 5869,
// RFC 8446 and the NVMe/TCP spec; it also checks itself against libnvme's test vectors).
#include "transport/tls_psk.hh"

#include <gtest/gtest.h>

#include <stdexcept>

namespace tp = ferry::transport;

namespace {

const char* lab_key = "NVMeTLSkey-1:01:xVClyHM7/Vjg/SafWM8HIejVsU3cf9i//WB1DL4nCJ6PgSKJ:";  // nvme gen-tls-key
const char* key384 = "NVMeTLSkey-1:02:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vcSEgBQ==:";
const char* host = "nqn.2014-08.org.nvmexpress:uuid:6e766d66-6c61-4200-8000-000000000001";
const char* sub = "nqn.2024-01.io.ferry:tls";

std::string hex(const std::vector<uint8_t>& v) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (uint8_t b : v) {
        s.push_back(d[b >> 4]);
        s.push_back(d[b & 15]);
    }
    return s;
}

std::string parse_error(const std::string& text) {
    try {
        tp::parse_psk_interchange(text);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(tls_psk, parses_the_lab_key_from_nvme_gen_tls_key) {
    auto k = tp::parse_psk_interchange(lab_key);
    EXPECT_EQ(k.hash, tp::psk_hash::sha256);
    EXPECT_EQ(hex(k.key), "c550a5c8733bfd58e0fd269f58cf0721e8d5b14ddc7fd8bffd60750cbe27089e");
    // A trailing newline (a key read from a file) is fine.
    EXPECT_EQ(tp::parse_psk_interchange(std::string(lab_key) + "\n").key, k.key);
}

TEST(tls_psk, parses_a_sha384_key) {
    auto k = tp::parse_psk_interchange(key384);
    EXPECT_EQ(k.hash, tp::psk_hash::sha384);
    EXPECT_EQ(hex(k.key),
              "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f");
}

TEST(tls_psk, refuses_malformed_keys_without_quoting_them) {
    std::string good = lab_key;
    struct {
        std::string text;
        const char* says;
    } cases[] = {
        {"NVMeTLSkey-2" + good.substr(12), "interchange format"},
        {good.substr(0, 13) + "03" + good.substr(15), "unknown hash"},
        {good.substr(0, 13) + "00" + good.substr(15), "hash 00"},
        {good.substr(0, 13) + "02" + good.substr(15), "characters"},  // 01-sized key with 02
        {good.substr(0, good.size() - 1), "trailing"},
        {good.substr(0, 20) + "*" + good.substr(21), "base64"},
        {good.substr(0, 20) + (good[20] == 'A' ? "B" : "A") + good.substr(21), "CRC"},
        {good.substr(0, 16) + good.substr(20), "characters"},
    };
    for (auto& c : cases) {
        std::string err = parse_error(c.text);
        EXPECT_NE(err.find(c.says), std::string::npos) << c.text << " -> " << err;
        EXPECT_EQ(err.find(good.substr(16, 40)), std::string::npos) << err;
        EXPECT_EQ(err.find(good.substr(20, 20)), std::string::npos) << err;
    }
}

// Base64 padding ('=') only as the last one or two characters; key384's part ends in "BQ==".
TEST(tls_psk, refuses_misplaced_padding) {
    std::string good = key384;
    const size_t end = good.size() - 5;  // where "BQ==:" starts
    ASSERT_EQ(good.substr(end), "BQ==:");
    EXPECT_NE(parse_error(good.substr(0, end) + "BQ=A:").find("not valid base64"), std::string::npos);
    EXPECT_NE(parse_error(good.substr(0, end) + "B=Q=:").find("not valid base64"), std::string::npos);
    EXPECT_NE(parse_error(good.substr(0, end) + "BQA=:").find("decodes to 53 bytes"), std::string::npos);
}

TEST(tls_psk, parses_identities) {
    auto id0 = tp::parse_psk_identity(std::string("NVMe0R01 ") + host + " " + sub);
    EXPECT_EQ(id0.version, 0);
    EXPECT_EQ(id0.hash, tp::psk_hash::sha256);
    EXPECT_EQ(id0.hostnqn, host);
    EXPECT_EQ(id0.subnqn, sub);
    EXPECT_TRUE(id0.digest.empty());
    auto id1 = tp::parse_psk_identity(std::string("NVMe1R02 ") + host + " " + sub + " abc=");
    EXPECT_EQ(id1.version, 1);
    EXPECT_EQ(id1.hash, tp::psk_hash::sha384);
    EXPECT_EQ(id1.digest, "abc=");
    EXPECT_EQ(tp::make_psk_identity(id1), std::string("NVMe1R02 ") + host + " " + sub + " abc=");
    for (std::string bad : {"NVMe0G01 h s", "NVMe2R01 h s", "NVMe0R03 h s", "NVMe0R01 h", "NVMe0R01 h s d",
                            "NVMe1R01 h s", "nvme0R01 h s", "NVMe0R01h s"})
        EXPECT_THROW(tp::parse_psk_identity(bad), std::invalid_argument) << bad;
}

TEST(tls_psk, retained_psk_digest_and_tls_psk_match_the_independent_vectors) {
    struct vec {
        const char* key;
        tp::hkdf_label_form form;
        const char *retained, *digest, *tls0, *tls1;
    } vecs[] = {
        {lab_key, tp::hkdf_label_form::libnvme_compat,
         "21fb433a28721b16556927139e0492ba0c2495fd3a463e94642b6a07519e8717",
         "SHWYYFts/bGNTvvoLSYTdHdGQvPd33xohVrqYfya+fg=",
         "2eaf657159a6958681bfb0c793322bd51a7560f08201c8557818218c7efcf510",
         "d118bc62220115b2401dc9d36e1823a28953eeb1c87c3b7c9af745e56be8bf00"},
        {lab_key, tp::hkdf_label_form::rfc8446, "fa5425866cd306e25639ce56e666b760255b625bce9b0b2c5e29565e7ebdfc11",
         "O+znAjo/E5FiHBa8j9PJ12eJrwyEfz1kHeM/kwRlla4=",
         "ac330a18ca682995570bd10901bb649d74488defc7da014cbdafffe9671d70c1",
         "3d0c7c663c6cc6196ee2e0b68d089ffd8c5dd394bfec5139b546a030dbdf0db9"},
        {key384, tp::hkdf_label_form::libnvme_compat,
         "3601a9decb9abd2695e95afa48cbcde632c8c85dd5dab6cd89122cd78314778930bdd944b6df9327947955552cda1c76",
         "FNw9ag+cw80wE2GsRUFKYKM3JdJct4ZJbpSpwMhRctLbF3FYVZFmEDXD76ABx+Dh",
         "90657553077fb87def19186bc35e12ce973fd2186054ccbad8ec787ffdb9ed75e3032d9345d8b414cd42a4d661083c2d",
         "496942b65cb77bf4a1318129c75fda92a9f0c1d89f4101d12f4bedd60d8b95b2dcba55f1a62751601ed8e00eac3c3037"},
        {key384, tp::hkdf_label_form::rfc8446,
         "551839dd816b3f91fca849c7cac17e7a20b817a08d28f68c66a4f41b7795a759c79208f5dfb28439673afdc85c3f222c",
         "9JC+z6WCBZdSQ+E+xnmgqPo7FvX/WEIVA/UIDz6ljxNgPZG3S2OJ3Q+XwYsMpzC3",
         "abfc968a5a4b4f8710b1ed0235d8a218b999d4893d8b3f90c0b692e9a4aa471d14b12432fdf605c2775feded1ae640ca",
         "f29363ab7b0511045e46259e1807e4d7d2027015031002f52f935e83bb06ee72411fa9fc56efcef61010eff3529fb195"},
    };
    for (auto& v : vecs) {
        SCOPED_TRACE(std::string(v.key) + " " + tp::to_string(v.form));
        auto k = tp::parse_psk_interchange(v.key);
        auto retained = tp::derive_retained_psk(k, host, v.form);
        EXPECT_EQ(hex(retained), v.retained);
        EXPECT_EQ(tp::derive_psk_digest(k.hash, retained, host, sub), v.digest);
        tp::psk_identity id{0, k.hash, host, sub, ""};
        std::string text0 = tp::make_psk_identity(id);
        EXPECT_EQ(hex(tp::derive_tls_psk(id, text0, retained, v.form)), v.tls0);
        // The whole handshake-side path: v0 with the form given, v1 picks the form by digest.
        EXPECT_EQ(hex(tp::derive_tls_psk_for(k, id, text0, v.form).key), v.tls0);
        id.version = 1;
        id.digest = v.digest;
        std::string text1 = tp::make_psk_identity(id);
        EXPECT_EQ(hex(tp::derive_tls_psk(id, text1, retained, v.form)), v.tls1);
        auto d = tp::derive_tls_psk_for(k, id, text1, tp::hkdf_label_form::libnvme_compat);
        EXPECT_EQ(hex(d.key), v.tls1);
        EXPECT_EQ(d.form, v.form);
    }
}

TEST(tls_psk, handshake_derivation_refuses_a_wrong_key_or_hash) {
    auto k = tp::parse_psk_interchange(lab_key);
    tp::psk_identity id{1, tp::psk_hash::sha256, host, sub, "SHWYYFts/bGNTvvoLSYTdHdGQvPd33xohVrqYfya+fg="};
    std::string text = tp::make_psk_identity(id);
    EXPECT_NO_THROW(tp::derive_tls_psk_for(k, id, text, tp::hkdf_label_form::rfc8446));
    k.key[0] ^= 1;  // another PSK: its digest differs
    try {
        tp::derive_tls_psk_for(k, id, text, tp::hkdf_label_form::rfc8446);
        ADD_FAILURE() << "a wrong PSK was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("wrong PSK"), std::string::npos) << e.what();
    }
    id.hash = tp::psk_hash::sha384;
    EXPECT_THROW(tp::derive_tls_psk_for(k, id, text, tp::hkdf_label_form::rfc8446), std::invalid_argument);
}
