// NVMe/TCP TLS 1.3 with pre-shared keys (TP 8011): listener modes and configured PSKs in the
// PSK interchange format that `nvme gen-tls-key` prints. The handshake itself is the
// connection's (OpenSSL on memory BIOs under the reactor's own non-blocking socket).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::transport {

// Per listener: "none" (plain only), "allowed" (either; told apart by the first byte),
// "required" (TLS only; a plain connection is refused before any capsule is read).
enum class tls_mode : uint8_t { none, allowed, required };
const char* to_string(tls_mode m);  // "none", "allowed", "required"

// The hash of a configured PSK ("NVMeTLSkey-1:HH:"): 01 SHA-256 (32-byte key, cipher suite
// TLS_AES_128_GCM_SHA256), 02 SHA-384 (48-byte key, TLS_AES_256_GCM_SHA384).
enum class psk_hash : uint8_t { sha256 = 1, sha384 = 2 };

// A configured PSK, decoded. The key bytes are wiped (OPENSSL_cleanse) when it goes.
struct configured_psk {
    psk_hash hash = psk_hash::sha256;
    std::vector<uint8_t> key;
    configured_psk() = default;
    configured_psk(const configured_psk&) = default;
    configured_psk& operator=(const configured_psk&) = default;
    ~configured_psk();
};

// Parses "NVMeTLSkey-1:HH:<base64 of key || CRC-32 (little endian)>:"; throws
// std::invalid_argument saying what is wrong (never quoting the key) on a bad prefix, hash,
// base64, length or CRC.
configured_psk parse_psk_interchange(std::string_view text);

}  // namespace ferry::transport
