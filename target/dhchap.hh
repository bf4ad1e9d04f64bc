// DH-HMAC-CHAP secrets in the format `nvme gen-dhchap-key` prints. The protocol itself
// (Authentication Send/Receive) is in target/auth.*.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace ferry::target {

// "DHHC-1:HH:<base64 of key || CRC-32 (little endian)>:". HH is the hash the secret is
// transformed with before use (00 none, 01 SHA-256, 02 SHA-384, 03 SHA-512); the key is 32,
// 48 or 64 bytes. Wiped (OPENSSL_cleanse) when it goes.
struct dhchap_secret {
    uint8_t transform = 0;
    std::vector<uint8_t> key;
    dhchap_secret() = default;
    dhchap_secret(const dhchap_secret&) = default;
    dhchap_secret& operator=(const dhchap_secret&) = default;
    ~dhchap_secret();
};

// Throws std::invalid_argument saying what is wrong (never quoting the key).
dhchap_secret parse_dhchap_secret(std::string_view text);

}  // namespace ferry::target
