// DH-HMAC-CHAP secrets as `nvme gen-dhchap-key` prints them (NVMe base spec 2.x, 8.3.5.5.8
// "DH-HMAC-CHAP secret representation"): "DHHC-1:HH:<base64 of key || CRC-32 LE>:".
#include <openssl/crypto.h>

#include <stdexcept>
#include <string>

#include "nvme/key_interchange.hh"
#include "target/dhchap.hh"

namespace ferry::target {

dhchap_secret::~dhchap_secret() {
    if (!key.empty()) OPENSSL_cleanse(key.data(), key.size());
}

namespace {
constexpr std::string_view prefix = "DHHC-1:";
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
    auto raw = nvme::decode_base64(text);
    if (!raw) throw std::invalid_argument("DH-HMAC-CHAP secret: the base64 part is not valid base64");
    size_t len = raw->v.size();
    // Key lengths the kernel accepts (36, 52 or 68 bytes with the CRC); like the kernel (and
    // unlike `nvme gen-dhchap-key`), any length goes with any transform hash.
    if (len != 36 && len != 52 && len != 68)
        throw std::invalid_argument("DH-HMAC-CHAP secret: the key is not 32, 48 or 64 bytes");
    if (!nvme::key_crc_matches(raw->v))
        throw std::invalid_argument("DH-HMAC-CHAP secret: CRC-32 mismatch (mistyped key?)");
    s.key.assign(raw->v.begin(), raw->v.end() - 4);
    return s;
}

}  // namespace ferry::target
