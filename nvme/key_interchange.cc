#include "nvme/key_interchange.hh"

#include <isa-l/crc.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

namespace ferry::nvme {

secret_bytes::~secret_bytes() {
    if (!v.empty()) OPENSSL_cleanse(v.data(), v.size());
}

namespace {
bool is_base64_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}
}  // namespace

std::optional<secret_bytes> decode_base64(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    size_t pad = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '=' && i + 2 >= text.size()) {
            ++pad;
        } else if (!is_base64_char(c) || pad) {
            return std::nullopt;
        }
    }
    std::optional<secret_bytes> out(std::in_place);
    out->v.resize(text.size() / 4 * 3);
    int n = EVP_DecodeBlock(out->v.data(), reinterpret_cast<const unsigned char*>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0 || static_cast<size_t>(n) != out->v.size()) return std::nullopt;
    out->v.resize(out->v.size() - pad);  // EVP_DecodeBlock counts the padding as zero bytes
    return out;
}

bool key_crc_matches(std::span<const uint8_t> raw) {
    if (raw.size() < 4) return false;
    size_t key_len = raw.size() - 4;
    const uint8_t* c = raw.data() + key_len;
    uint32_t stored = uint32_t(c[0]) | uint32_t(c[1]) << 8 | uint32_t(c[2]) << 16 | uint32_t(c[3]) << 24;
    return crc32_gzip_refl(0, raw.data(), key_len) == stored;  // zlib's crc32()
}

}  // namespace ferry::nvme
