// PLACEHOLDER (pinned interface): the DH-HMAC-CHAP part of issue 10 replaces this file.
#include <openssl/crypto.h>

#include <stdexcept>

#include "target/dhchap.hh"

namespace ferry::target {

dhchap_secret::~dhchap_secret() {
    if (!key.empty()) OPENSSL_cleanse(key.data(), key.size());
}

dhchap_secret parse_dhchap_secret(std::string_view) {
    throw std::invalid_argument("DH-HMAC-CHAP keys are not built yet");
}

}  // namespace ferry::target
