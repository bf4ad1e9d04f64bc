// PSK interchange format, PSK identities and the HKDF derivations of TP 8011 / TP 8018.
#include "transport/tls_psk.hh"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <cstring>
#include <stdexcept>

#include "nvme/key_interchange.hh"
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

const char* to_string(hkdf_label_form f) {
    return f == hkdf_label_form::rfc8446 ? "rfc8446" : "libnvme-compat";
}

configured_psk::~configured_psk() {
    if (!key.empty()) OPENSSL_cleanse(key.data(), key.size());
}

derived_tls_psk::~derived_tls_psk() {
    if (!key.empty()) OPENSSL_cleanse(key.data(), key.size());
}

namespace {

size_t key_size(psk_hash h) {
    return h == psk_hash::sha384 ? 48 : 32;
}
const char* digest_name(psk_hash h) {
    return h == psk_hash::sha384 ? "SHA384" : "SHA256";
}

// HKDF (extract with a zero salt, then expand) of `key` with `info`, `out_len` bytes.
std::vector<uint8_t> hkdf(psk_hash h, const std::vector<uint8_t>& key, const std::string& info, size_t out_len) {
    EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
    if (!kdf) throw std::runtime_error("OpenSSL has no HKDF");
    EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (!ctx) throw std::runtime_error("HKDF context allocation failed");
    char md[8];
    std::strncpy(md, digest_name(h), sizeof md);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, md, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(key.data()), key.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size()),
        OSSL_PARAM_construct_end(),
    };
    std::vector<uint8_t> out(out_len);
    int ok = EVP_KDF_derive(ctx, out.data(), out.size(), params);
    EVP_KDF_CTX_free(ctx);
    if (ok <= 0) throw std::runtime_error("HKDF derivation failed");
    return out;
}

// The HKDF-Expand-Label info for `label` (without "tls13 ") and `context`.
std::string label_info(hkdf_label_form form, size_t out_len, std::string_view label, std::string_view context) {
    std::string info;
    std::string full_label = "tls13 " + std::string(label);
    if (form == hkdf_label_form::rfc8446) {
        info.push_back(char(out_len >> 8));
        info.push_back(char(out_len & 0xff));
        info.push_back(char(full_label.size()));
        info += full_label;
        info.push_back(char(context.size()));
        info += context;
    } else {
        info.push_back(char(out_len & 0xff));
        info.push_back(char(out_len >> 8));
        info += full_label;
        info += context;
    }
    return info;
}

std::string base64(const uint8_t* data, size_t len) {
    std::string out(4 * ((len + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, int(len));
    out.resize(size_t(n));
    return out;
}

}  // namespace

configured_psk parse_psk_interchange(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    constexpr std::string_view prefix = "NVMeTLSkey-1:";
    if (text.substr(0, prefix.size()) != prefix)
        throw std::invalid_argument("TLS PSK: not in the PSK interchange format (expected \"NVMeTLSkey-1:HH:...:\")");
    text.remove_prefix(prefix.size());
    if (text.size() < 3 || text[2] != ':')
        throw std::invalid_argument("TLS PSK: the hash field is not two digits followed by ':'");
    std::string_view hh = text.substr(0, 2);
    configured_psk psk;
    if (hh == "01") {
        psk.hash = psk_hash::sha256;
    } else if (hh == "02") {
        psk.hash = psk_hash::sha384;
    } else if (hh == "00") {
        // libnvme would use such a key untransformed, but `nvme gen-tls-key` never makes one
        // and the configured PSK must say which hash derives the retained PSK.
        throw std::invalid_argument(
            "TLS PSK: hash 00 (untransformed PSK) is not supported; use a key from `nvme gen-tls-key` (01 or 02)");
    } else {
        throw std::invalid_argument("TLS PSK: unknown hash field \"" + std::string(hh) +
                                    "\" (01 = SHA-256, 02 = SHA-384)");
    }
    text.remove_prefix(3);
    if (text.empty() || text.back() != ':') throw std::invalid_argument("TLS PSK: missing the trailing ':'");
    text.remove_suffix(1);
    size_t want_len = key_size(psk.hash);
    size_t want_chars = 4 * ((want_len + 4 + 2) / 3);
    if (text.size() != want_chars)
        throw std::invalid_argument("TLS PSK: the base64 part has " + std::to_string(text.size()) + " characters, a " +
                                    std::to_string(want_len) + "-byte key with its CRC has " +
                                    std::to_string(want_chars));
    auto raw = nvme::decode_base64(text);
    if (!raw) throw std::invalid_argument("TLS PSK: the key is not valid base64");
    if (raw->v.size() != want_len + 4)
        throw std::invalid_argument("TLS PSK: decodes to " + std::to_string(raw->v.size()) + " bytes, expected " +
                                    std::to_string(want_len + 4) + " (key and CRC-32)");
    if (!nvme::key_crc_matches(raw->v))
        throw std::invalid_argument("TLS PSK: CRC-32 mismatch (the key is mistyped or truncated)");
    psk.key.assign(raw->v.begin(), raw->v.begin() + long(want_len));
    return psk;
}

psk_identity parse_psk_identity(std::string_view text) {
    // "NVMe" digit ('R' | 'G') 2 digits ' ' ...
    if (text.size() < 9 || text.substr(0, 4) != "NVMe" || text[8] != ' ')
        throw std::invalid_argument("PSK identity does not start with \"NVMe<v>R<hh> \"");
    psk_identity id;
    if (text[4] == '0')
        id.version = 0;
    else if (text[4] == '1')
        id.version = 1;
    else
        throw std::invalid_argument("PSK identity version " + std::string(1, text[4]) + " is not supported (0 or 1)");
    if (text[5] == 'G')
        throw std::invalid_argument("PSK identity of a generated PSK (secure channel concatenation) is not supported");
    if (text[5] != 'R') throw std::invalid_argument("PSK identity type is not 'R' (retained PSK)");
    std::string_view hh = text.substr(6, 2);
    if (hh == "01")
        id.hash = psk_hash::sha256;
    else if (hh == "02")
        id.hash = psk_hash::sha384;
    else
        throw std::invalid_argument("PSK identity hash \"" + std::string(hh) + "\" is not 01 or 02");
    std::string_view rest = text.substr(9);
    auto sp = rest.find(' ');
    if (sp == std::string_view::npos || sp == 0) throw std::invalid_argument("PSK identity has no subsystem NQN");
    id.hostnqn = std::string(rest.substr(0, sp));
    rest.remove_prefix(sp + 1);
    sp = rest.find(' ');
    if (id.version == 0) {
        if (rest.empty() || sp != std::string_view::npos)
            throw std::invalid_argument("PSK identity version 0 must be \"NVMe0Rhh <hostnqn> <subnqn>\"");
        id.subnqn = std::string(rest);
    } else {
        if (sp == std::string_view::npos || sp == 0 || sp + 1 >= rest.size())
            throw std::invalid_argument("PSK identity version 1 must be \"NVMe1Rhh <hostnqn> <subnqn> <digest>\"");
        id.subnqn = std::string(rest.substr(0, sp));
        id.digest = std::string(rest.substr(sp + 1));
        if (id.digest.find(' ') != std::string::npos)
            throw std::invalid_argument("PSK identity has more than four fields");
    }
    return id;
}

std::string make_psk_identity(const psk_identity& id) {
    std::string s = "NVMe" + std::to_string(id.version) + (id.hash == psk_hash::sha384 ? "R02 " : "R01 ");
    s += id.hostnqn + " " + id.subnqn;
    if (id.version == 1) s += " " + id.digest;
    return s;
}

std::vector<uint8_t> derive_retained_psk(const configured_psk& configured, std::string_view hostnqn,
                                         hkdf_label_form form) {
    size_t len = configured.key.size();
    return hkdf(configured.hash, configured.key, label_info(form, len, "HostNQN", hostnqn), len);
}

std::string derive_psk_digest(psk_hash hash, const std::vector<uint8_t>& retained, std::string_view hostnqn,
                              std::string_view subnqn) {
    std::string msg = std::string(hostnqn) + " " + std::string(subnqn) + " NVMe-over-Fabrics";
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (!mac) throw std::runtime_error("OpenSSL has no HMAC");
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    if (!ctx) throw std::runtime_error("HMAC context allocation failed");
    char md[8];
    std::strncpy(md, digest_name(hash), sizeof md);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, md, 0), OSSL_PARAM_construct_end()};
    uint8_t out[EVP_MAX_MD_SIZE];
    size_t out_len = 0;
    bool ok = EVP_MAC_init(ctx, retained.data(), retained.size(), params) &&
              EVP_MAC_update(ctx, reinterpret_cast<const uint8_t*>(msg.data()), msg.size()) &&
              EVP_MAC_final(ctx, out, &out_len, sizeof out);
    EVP_MAC_CTX_free(ctx);
    if (!ok) throw std::runtime_error("HMAC failed");
    return base64(out, out_len);
}

std::vector<uint8_t> derive_tls_psk(const psk_identity& id, std::string_view identity_text,
                                    const std::vector<uint8_t>& retained, hkdf_label_form form) {
    std::string context = id.version == 0 ? std::string(identity_text)
                                          : std::string(id.hash == psk_hash::sha384 ? "02 " : "01 ") + id.digest;
    size_t len = retained.size();
    return hkdf(id.hash, retained, label_info(form, len, "nvme-tls-psk", context), len);
}

derived_tls_psk derive_tls_psk_for(const configured_psk& configured, const psk_identity& id,
                                   std::string_view identity_text, hkdf_label_form v0_form) {
    if (id.hash != configured.hash)
        throw std::invalid_argument(std::string("the identity's hash ") + (id.hash == psk_hash::sha384 ? "02" : "01") +
                                    " differs from the configured PSK's " +
                                    (configured.hash == psk_hash::sha384 ? "02" : "01"));
    derived_tls_psk out;
    if (id.version == 0) {
        nvme::secret_bytes retained{derive_retained_psk(configured, id.hostnqn, v0_form)};
        out.key = derive_tls_psk(id, identity_text, retained.v, v0_form);
        out.form = v0_form;
        return out;
    }
    // The digest tells which derivation the host used (and a mismatch in both = wrong PSK).
    for (auto form : {hkdf_label_form::rfc8446, hkdf_label_form::libnvme_compat}) {
        nvme::secret_bytes retained{derive_retained_psk(configured, id.hostnqn, form)};
        std::string digest = derive_psk_digest(id.hash, retained.v, id.hostnqn, id.subnqn);
        if (CRYPTO_memcmp(digest.data(), id.digest.data(), std::min(digest.size(), id.digest.size())) == 0 &&
            digest.size() == id.digest.size()) {
            out.key = derive_tls_psk(id, identity_text, retained.v, form);
            out.form = form;
            return out;
        }
    }
    throw std::invalid_argument("the identity's PSK digest does not match the configured PSK (wrong PSK)");
}

}  // namespace ferry::transport
