// The base64 part that TLS PSKs ("NVMeTLSkey-1:HH:...:", TP 8011) and DH-HMAC-CHAP secrets
// ("DHHC-1:HH:...:", base spec 8.3.5.5.8) share: the key followed by its CRC-32 (zlib's
// crc32(), little endian), in base64. The prefixes, hash fields and key lengths differ, so
// each parser (transport/tls_psk.cc, target/dhchap_key.cc) checks those and says what is
// wrong in its own words.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::nvme {

// Bytes that hold a key: wiped (OPENSSL_cleanse) when they go.
struct secret_bytes {
    std::vector<uint8_t> v;
    secret_bytes() = default;
    explicit secret_bytes(std::vector<uint8_t> b) : v(std::move(b)) {}
    secret_bytes(secret_bytes&&) = default;
    secret_bytes& operator=(secret_bytes&&) = delete;
    ~secret_bytes();
};

// Decodes base64 (a multiple of 4 characters, '=' padding only as the last one or two);
// none if `text` is not that.
std::optional<secret_bytes> decode_base64(std::string_view text);

// True if `raw` (key || CRC-32 LE) is at least the CRC long and the CRC matches the key.
bool key_crc_matches(std::span<const uint8_t> raw);

}  // namespace ferry::nvme
