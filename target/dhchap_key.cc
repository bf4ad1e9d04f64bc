// DH-HMAC-CHAP secrets as `nvme gen-dhchap-key` prints them (NVMe base spec 2.x, 8.3.5.5.8
// "DH-HMAC-CHAP secret representation"): "DHHC-1:HH:<base64 of key || CRC-32 LE>:".
#include <isa-l/crc.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <stdexcept>
#include <string>

#include "target/dhchap.hh"

namespace ferry::target {

dhchap_secret::~dhchap_secret() {
    if (!key.empty()) OPENSSL_cleanse(key.data(), key.size());
}

namespace {
constexpr std::string_view prefix = "DHHC-1:";

bool is_base64_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

// Decoded bytes wiped on every path (they hold the key).
struct wiped_bytes {
    std::vector<uint8_t> b;
    ~wiped_bytes() {
        if (!b.empty()) OPENSSL_cleanse(b.data(), b.size());
    }
};
}  // namespace

dhchap_secret parse_dhchap_secret(std::string_view text) {
    // The messages say what is wrong with the text, never any part of it.
    if (text.substr(0, prefix.size()) != prefix)
        throw std::invalid_argument("DH-HMAC-CHAP secret: does not start with \"DHHC-1:\"");
    text.remove_prefix(prefix.size());
    if (text.size() < 3 || text[2] != ':' || text[0] != '0' || text[1] < '0' || text[1] > '3')
        throw std::invalid_argument("DH-HMAC-CHAP secret: the transform hash is not 00, 01, 02 or 03");
    dhchap_secret s;
    s.transform = static_cast<uint8_t>(text[1] - '0');
    text.remove_prefix(3);
    // nvme-cli prints a closing ':'; the kernel also takes the secret without it.
    if (!text.empty() && text.back() == ':') text.remove_suffix(1);
    if (text.empty() || text.size() % 4 != 0)
        throw std::invalid_argument("DH-HMAC-CHAP secret: the base64 part has a bad length");
    size_t pad = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '=') {
            // Padding only at the end, at most two.
            if (i + 2 < text.size() || (i + 1 < text.size() && text[i + 1] != '='))
                throw std::invalid_argument("DH-HMAC-CHAP secret: the base64 part is not valid base64");
            ++pad;
        } else if (!is_base64_char(c)) {
            throw std::invalid_argument("DH-HMAC-CHAP secret: the base64 part is not valid base64");
        }
    }
    wiped_bytes raw;
    raw.b.resize(text.size() / 4 * 3);
    int n = EVP_DecodeBlock(raw.b.data(), reinterpret_cast<const unsigned char*>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0 || static_cast<size_t>(n) != raw.b.size())
        throw std::invalid_argument("DH-HMAC-CHAP secret: the base64 part is not valid base64");
    size_t len = raw.b.size() - pad;  // EVP_DecodeBlock counts the padding as zero bytes
    // Key lengths the kernel accepts (36, 52 or 68 bytes with the CRC); like the kernel (and
    // unlike `nvme gen-dhchap-key`), any length goes with any transform hash.
    if (len != 36 && len != 52 && len != 68)
        throw std::invalid_argument("DH-HMAC-CHAP secret: the key is not 32, 48 or 64 bytes");
    size_t key_len = len - 4;
    uint32_t want = crc32_gzip_refl(0, raw.b.data(), key_len);  // zlib's crc32()
    uint32_t got = uint32_t(raw.b[key_len]) | uint32_t(raw.b[key_len + 1]) << 8 | uint32_t(raw.b[key_len + 2]) << 16 |
                   uint32_t(raw.b[key_len + 3]) << 24;
    if (want != got) throw std::invalid_argument("DH-HMAC-CHAP secret: CRC-32 mismatch (mistyped key?)");
    s.key.assign(raw.b.begin(), raw.b.begin() + key_len);
    return s;
}

}  // namespace ferry::target
