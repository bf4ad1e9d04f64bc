// PLACEHOLDER (pinned interface): the TLS part of issue 10 replaces this file.
#include <openssl/crypto.h>

#include <stdexcept>

#include "transport/tls.hh"

namespace ferry::transport {

const char* to_string(tls_mode m) {
    switch (m) {
        case tls_mode::none:
            return "none";
        case tls_mode::allowed:
            return "allowed";
        case tls_mode::required:
            return "required";
    }
    return "none";
}

configured_psk::~configured_psk() {
    if (!key.empty()) OPENSSL_cleanse(key.data(), key.size());
}

configured_psk parse_psk_interchange(std::string_view) { throw std::invalid_argument("TLS PSKs are not built yet"); }

}  // namespace ferry::transport
