// NVMe/TCP TLS PSK identities and the derivations from a configured PSK to the TLS PSK, as
// the Linux host side computes them (libnvme's nvme_insert_tls_key_versioned, used by
// `nvme check-tls-key --insert`; tlshd then offers the key under its identity).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "transport/tls.hh"

namespace ferry::transport {

// "NVMe<v>R<hh> <hostnqn> <subnqn>[ <digest>]": v 0 (TP 8011, no digest) or 1 (with the PSK
// digest); hh the hash of the cipher suite (01 SHA-256, 02 SHA-384). 'G' (a PSK generated
// by DH-HMAC-CHAP secure concatenation) is not supported.
struct psk_identity {
    int version = 0;
    psk_hash hash = psk_hash::sha256;
    std::string hostnqn;
    std::string subnqn;
    std::string digest;  // base64, version 1 only
};

// Parses an identity; throws std::invalid_argument saying what is wrong (identities are
// not secret, but only the identity's shape is quoted).
psk_identity parse_psk_identity(std::string_view identity);

// How the HKDF-Expand-Label info is encoded. rfc8446 is the spec's HkdfLabel (length big
// endian, label and context each prefixed with their length); libnvme_compat is what
// libnvme up to 1.15 (so nvme-cli 2.13's `check-tls-key --insert`) computes and newer
// libnvme keeps as "compat": length little endian, no length prefixes.
enum class hkdf_label_form : uint8_t { rfc8446, libnvme_compat };
const char* to_string(hkdf_label_form f);

// Retained PSK = HKDF-Expand-Label(HKDF-Extract(0, configured), "HostNQN", hostnqn, L),
// hash and L of the configured PSK.
std::vector<uint8_t> derive_retained_psk(const configured_psk& configured, std::string_view hostnqn,
                                         hkdf_label_form form);

// PSK digest = base64(HMAC(retained, hostnqn " " subnqn " NVMe-over-Fabrics")).
std::string derive_psk_digest(psk_hash hash, const std::vector<uint8_t>& retained, std::string_view hostnqn,
                              std::string_view subnqn);

// TLS PSK = HKDF-Expand-Label(HKDF-Extract(0, retained), "nvme-tls-psk", context, L) where
// context is the whole identity for version 0 and "<hh> <digest>" for version 1.
std::vector<uint8_t> derive_tls_psk(const psk_identity& id, std::string_view identity_text,
                                    const std::vector<uint8_t>& retained, hkdf_label_form form);

// The identity text a host with this configured PSK sends.
std::string make_psk_identity(const psk_identity& id);

// Everything above for one handshake: checks that the identity fits the configured PSK and
// returns the TLS PSK; version 1 identities pick the label form whose digest matches,
// version 0 ones use `v0_form`. Throws std::invalid_argument with the reason (hash
// mismatch, digest mismatch = wrong PSK); never quotes key material.
struct derived_tls_psk {
    std::vector<uint8_t> key;
    hkdf_label_form form = hkdf_label_form::libnvme_compat;
    ~derived_tls_psk();
};
derived_tls_psk derive_tls_psk_for(const configured_psk& configured, const psk_identity& id,
                                   std::string_view identity_text, hkdf_label_form v0_form);

}  // namespace ferry::transport
