#include "target/auth.hh"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/dh.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace ferry::target::auth {
namespace {
// Message types and ids.
constexpr uint8_t type_common = 0x00, type_dhchap = 0x01;
constexpr uint8_t id_negotiate = 0x00, id_challenge = 0x01, id_reply = 0x02, id_success1 = 0x03, id_success2 = 0x04,
                  id_failure2 = 0xF0, id_failure1 = 0xF1;
constexpr uint8_t authid_dhchap = 0x01;
constexpr uint8_t reason_failure = 0x01;
// Sizes: the fixed part of each message, one protocol descriptor of AUTH_Negotiate.
constexpr size_t negotiate_hdr = 8, descriptor_len = 64, max_ids = 30;
constexpr size_t challenge_hdr = 16, reply_hdr = 16, success1_hdr = 16, success2_len = 16, failure_len = 8;

struct hash_info {
    uint8_t id;
    const char* name;
    size_t len;
    const EVP_MD* (*md)();
};
constexpr hash_info known_hashes[] = {{hash_sha256, "sha256", 32, EVP_sha256},
                                      {hash_sha384, "sha384", 48, EVP_sha384},
                                      {hash_sha512, "sha512", 64, EVP_sha512}};
const hash_info* hash_of(uint8_t id) {
    for (const auto& h : known_hashes)
        if (h.id == id) return &h;
    return nullptr;
}
const EVP_MD* md_of(uint8_t hash) {
    const hash_info* h = hash_of(hash);
    return h ? h->md() : nullptr;
}

uint16_t le16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] | p[1] << 8);
}
uint32_t le32(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
void put16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
}
void put32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Incremental HMAC over EVP_MAC.
class hmac_ctx {
public:
    hmac_ctx(uint8_t hash, std::span<const uint8_t> key) : _len(hash_len(hash)) {
        EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
        if (!mac) throw std::runtime_error("HMAC unavailable");
        _ctx = EVP_MAC_CTX_new(mac);
        EVP_MAC_free(mac);
        char digest[16];
        std::snprintf(digest, sizeof(digest), "%s", EVP_MD_get0_name(md_of(hash)));
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
        if (!_ctx || !EVP_MAC_init(_ctx, key.data(), key.size(), params)) {
            EVP_MAC_CTX_free(_ctx);
            throw std::runtime_error("HMAC init failed");
        }
    }
    ~hmac_ctx() { EVP_MAC_CTX_free(_ctx); }
    hmac_ctx& update(std::span<const uint8_t> d) {
        EVP_MAC_update(_ctx, d.data(), d.size());
        return *this;
    }
    hmac_ctx& update(std::string_view s) {
        EVP_MAC_update(_ctx, reinterpret_cast<const uint8_t*>(s.data()), s.size());
        return *this;
    }
    std::vector<uint8_t> final() {
        std::vector<uint8_t> out(_len);
        size_t n = 0;
        if (!EVP_MAC_final(_ctx, out.data(), &n, out.size()) || n != _len) throw std::runtime_error("HMAC failed");
        return out;
    }

private:
    EVP_MAC_CTX* _ctx = nullptr;
    size_t _len;
};

std::vector<uint8_t> response(uint8_t hash, std::span<const uint8_t> key, std::span<const uint8_t> challenge,
                              uint32_t seq, uint16_t t_id, uint8_t sc_c, std::string_view label, std::string_view nqn1,
                              std::string_view nqn2) {
    uint8_t fields[7];
    put32(fields, seq);
    put16(fields + 4, t_id);
    fields[6] = sc_c;
    const uint8_t zero = 0;
    return hmac_ctx(hash, key)
        .update(challenge)
        .update(std::span<const uint8_t>(fields, 7))
        .update(label)
        .update(nqn1)
        .update(std::span<const uint8_t>(&zero, 1))
        .update(nqn2)
        .final();
}

struct group_info {
    uint8_t id;
    const char* name;
    size_t bytes;
};
constexpr group_info groups[] = {{dh_null, "null", 0},
                                 {dh_ffdhe2048, "ffdhe2048", 256},
                                 {dh_ffdhe3072, "ffdhe3072", 384},
                                 {dh_ffdhe4096, "ffdhe4096", 512},
                                 {dh_ffdhe6144, "ffdhe6144", 768},
                                 {dh_ffdhe8192, "ffdhe8192", 1024}};
const group_info* group_of(uint8_t id) {
    for (const auto& g : groups)
        if (g.id == id) return &g;
    return nullptr;
}

EVP_PKEY* pkey_from(uint8_t group, const char* param, std::span<const uint8_t> value, int selection) {
    const group_info* g = group_of(group);
    if (!g || !g->bytes) return nullptr;
    OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
    BIGNUM* bn = BN_bin2bn(value.data(), static_cast<int>(value.size()), nullptr);
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr);
    OSSL_PARAM* params = nullptr;
    EVP_PKEY* pkey = nullptr;
    if (bld && bn && ctx && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, g->name, 0) &&
        OSSL_PARAM_BLD_push_BN(bld, param, bn) && (params = OSSL_PARAM_BLD_to_param(bld)) &&
        EVP_PKEY_fromdata_init(ctx) > 0)
        if (EVP_PKEY_fromdata(ctx, &pkey, selection, params) <= 0) pkey = nullptr;
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    BN_clear_free(bn);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

std::vector<uint8_t> random_bytes(size_t n) {
    std::vector<uint8_t> v(n);
    if (RAND_bytes(v.data(), static_cast<int>(n)) != 1) throw std::runtime_error("no randomness");
    return v;
}
}  // namespace

size_t hash_len(uint8_t hash) {
    const hash_info* h = hash_of(hash);
    return h ? h->len : 0;
}

const char* hash_name(uint8_t hash) {
    const hash_info* h = hash_of(hash);
    return h ? h->name : "?";
}

size_t dhgroup_bytes(uint8_t group) {
    const group_info* g = group_of(group);
    return g ? g->bytes : 0;
}

const char* dhgroup_name(uint8_t group) {
    const group_info* g = group_of(group);
    return g ? g->name : "?";
}

std::vector<uint8_t> parse_dhgroups(std::string_view list) {
    std::vector<uint8_t> out;
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view name = list.substr(0, comma);
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        const group_info* found = nullptr;
        for (const auto& g : groups)
            if (name == g.name) found = &g;
        if (!found) throw std::invalid_argument("unknown DH group '" + std::string(name) + "'");
        if (std::find(out.begin(), out.end(), found->id) == out.end()) out.push_back(found->id);
    }
    if (out.empty()) throw std::invalid_argument("no DH group");
    return out;
}

const char* failure_name(failure f) {
    switch (f) {
        case failure::none:
            return "none";
        case failure::failed:
            return "authentication failed (response mismatch or no key)";
        case failure::not_usable:
            return "authentication protocol not usable";
        case failure::concat_mismatch:
            return "secure channel concatenation mismatch (not supported)";
        case failure::hash_unusable:
            return "hash function not usable";
        case failure::dhgroup_unusable:
            return "DH group not usable";
        case failure::incorrect_payload:
            return "incorrect payload";
        case failure::incorrect_message:
            return "incorrect protocol message";
    }
    return "?";
}

secret_bytes::~secret_bytes() {
    if (!b.empty()) OPENSSL_cleanse(b.data(), b.size());
}

std::vector<uint8_t> hmac(uint8_t hash, std::span<const uint8_t> key, std::span<const uint8_t> data) {
    return hmac_ctx(hash, key).update(data).final();
}

secret_bytes transform_key(const dhchap_secret& s, std::string_view nqn) {
    secret_bytes out;
    if (s.transform == 0) {
        out.b = s.key;
        return out;
    }
    out.b = hmac_ctx(s.transform, s.key).update(nqn).update(std::string_view("NVMe-over-Fabrics")).final();
    return out;
}

std::vector<uint8_t> augmented_challenge(uint8_t hash, std::span<const uint8_t> session_key,
                                         std::span<const uint8_t> challenge) {
    secret_bytes hashed(hash_len(hash));
    unsigned n = 0;
    if (!EVP_Digest(session_key.data(), session_key.size(), hashed.b.data(), &n, md_of(hash), nullptr))
        throw std::runtime_error("digest failed");
    return hmac(hash, hashed.b, challenge);
}

std::vector<uint8_t> host_response(uint8_t hash, std::span<const uint8_t> transformed_key,
                                   std::span<const uint8_t> challenge, uint32_t seq, uint16_t t_id, uint8_t sc_c,
                                   std::string_view hostnqn, std::string_view subnqn) {
    return response(hash, transformed_key, challenge, seq, t_id, sc_c, "HostHost", hostnqn, subnqn);
}

std::vector<uint8_t> ctrl_response(uint8_t hash, std::span<const uint8_t> transformed_key,
                                   std::span<const uint8_t> challenge, uint32_t seq, uint16_t t_id, uint8_t sc_c,
                                   std::string_view subnqn, std::string_view hostnqn) {
    return response(hash, transformed_key, challenge, seq, t_id, sc_c, "Controller", subnqn, hostnqn);
}

// ---- dh_key ----

dh_key dh_key::generate(uint8_t group) {
    const group_info* g = group_of(group);
    if (!g || !g->bytes) throw std::runtime_error("not a DH group");
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr);
    char name[16];
    std::snprintf(name, sizeof(name), "%s", g->name);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, name, 0),
                           OSSL_PARAM_construct_end()};
    EVP_PKEY* pkey = nullptr;
    bool ok = ctx && EVP_PKEY_keygen_init(ctx) > 0 && EVP_PKEY_CTX_set_params(ctx, params) > 0 &&
              EVP_PKEY_generate(ctx, &pkey) > 0;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) throw std::runtime_error(std::string("DH key generation failed for ") + g->name);
    dh_key k;
    k._pkey = pkey;
    k._group = group;
    unsigned char* pub = nullptr;
    size_t n = EVP_PKEY_get1_encoded_public_key(pkey, &pub);
    if (n == 0 || n > g->bytes) {
        OPENSSL_free(pub);
        throw std::runtime_error("DH public value");
    }
    k._public.assign(g->bytes - n, 0);  // left-pad to the group size
    k._public.insert(k._public.end(), pub, pub + n);
    OPENSSL_free(pub);
    return k;
}

dh_key dh_key::from_private(uint8_t group, std::span<const uint8_t> priv) {
    EVP_PKEY* pkey = pkey_from(group, OSSL_PKEY_PARAM_PRIV_KEY, priv, EVP_PKEY_KEYPAIR);
    if (!pkey) throw std::runtime_error("DH private key import failed");
    dh_key k;
    k._pkey = pkey;
    k._group = group;
    return k;
}

dh_key::dh_key(dh_key&& o) noexcept : _pkey(o._pkey), _group(o._group), _public(std::move(o._public)) {
    o._pkey = nullptr;
}

dh_key& dh_key::operator=(dh_key&& o) noexcept {
    if (this != &o) {
        EVP_PKEY_free(static_cast<EVP_PKEY*>(_pkey));
        _pkey = o._pkey;
        _group = o._group;
        _public = std::move(o._public);
        o._pkey = nullptr;
    }
    return *this;
}

dh_key::~dh_key() {
    EVP_PKEY_free(static_cast<EVP_PKEY*>(_pkey));
}

std::optional<secret_bytes> dh_key::derive(std::span<const uint8_t> peer) const {
    const size_t bytes = dhgroup_bytes(_group);
    if (peer.size() != bytes) return std::nullopt;
    EVP_PKEY* peer_key = pkey_from(_group, OSSL_PKEY_PARAM_PUB_KEY, peer, EVP_PKEY_PUBLIC_KEY);
    if (!peer_key) return std::nullopt;
    std::optional<secret_bytes> out;
    // The range check (1 < y < p - 1), as Linux does: the full subgroup check is a modular
    // exponentiation with a full-size exponent (~100 ms for ffdhe8192 on the reactor), and a
    // value outside the subgroup leaks at most one bit of a private key used only once.
    EVP_PKEY_CTX* check = EVP_PKEY_CTX_new_from_pkey(nullptr, peer_key, nullptr);
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_pkey(nullptr, static_cast<EVP_PKEY*>(_pkey), nullptr);
    size_t len = bytes;
    secret_bytes s(bytes);
    if (check && ctx && EVP_PKEY_public_check_quick(check) > 0 && EVP_PKEY_derive_init(ctx) > 0 &&
        EVP_PKEY_CTX_set_dh_pad(ctx, 1) > 0 && EVP_PKEY_derive_set_peer_ex(ctx, peer_key, 0) > 0 &&
        EVP_PKEY_derive(ctx, s.b.data(), &len) > 0 && len == bytes)
        out = std::move(s);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_free(peer_key);
    return out;
}

// ---- session ----

session::session(session_params p) : _p(std::move(p)) {}

void session::fail(failure why) {
    _reason = why;
    _step = step::send_failure1;
}

void session::end(bool ok) {
    if (ok) {
        _authenticated = true;
        _step = step::idle;
        _reason = failure::none;
    } else {
        _authenticated = false;
        _step = step::failed;
    }
    _outcome = ok ? outcome::succeeded : outcome::failed;
    _dh.reset();
    _session_key = {};
    _c1.clear();
}

session::outcome session::take_outcome() {
    outcome o = _outcome;
    _outcome = outcome::none;
    return o;
}

bool session::starts_exchange(std::span<const uint8_t> m) {
    return m.size() >= 2 && m[0] == type_common && m[1] == id_negotiate;
}

void session::on_send(std::span<const uint8_t> m) {
    if (_step == step::failed) return;
    // Every message has AUTH_Type, AUTH_Id, 2 reserved bytes and T_ID.
    if (m.size() < 6) return fail(failure::incorrect_payload);
    const uint8_t type = m[0], id = m[1];
    const uint16_t t_id = le16(&m[4]);
    if (type == type_common && id == id_negotiate) {
        // A new exchange, also on an authenticated queue (re-authentication).
        _c2.clear();
        _dh.reset();
        _session_key = {};
        _t_id = t_id;
        failure f = negotiate(m);
        if (f != failure::none) return fail(f);
        _step = step::send_challenge;
        return;
    }
    if (type == type_common && id == id_failure2) {
        // The host refused our response (bidirectional), or gave up.
        _reason = m.size() >= failure_len ? static_cast<failure>(m[7]) : failure::incorrect_payload;
        if (_reason == failure::none) _reason = failure::failed;
        return end(false);
    }
    const bool expected = type == type_dhchap && ((id == id_reply && _step == step::expect_reply) ||
                                                  (id == id_success2 && _step == step::expect_success2));
    if (!expected) {
        // Out of turn: the next Receive answers Failure1 (if the host asks for one).
        return fail(failure::incorrect_message);
    }
    if (t_id != _t_id) return fail(failure::incorrect_payload);
    if (id == id_reply) {
        failure f = reply(m);
        if (f != failure::none) return fail(f);
        _step = step::send_success1;
        return;
    }
    // Success2: the host verified our response.
    if (m.size() < success2_len) return fail(failure::incorrect_payload);
    end(true);
}

failure session::negotiate(std::span<const uint8_t> m) {
    if (m.size() < negotiate_hdr + descriptor_len) return failure::incorrect_payload;
    const uint8_t sc_c = m[6], napd = m[7];
    // Secure channel concatenation (a TLS PSK derived from this exchange) is not built.
    if (sc_c != 0) return failure::concat_mismatch;
    if (napd == 0 || m.size() < negotiate_hdr + size_t(napd) * descriptor_len) return failure::incorrect_payload;
    const uint8_t* d = nullptr;
    for (size_t i = 0; i < napd && !d; ++i)
        if (m[negotiate_hdr + i * descriptor_len] == authid_dhchap) d = &m[negotiate_hdr + i * descriptor_len];
    if (!d) return failure::not_usable;
    const uint8_t halen = d[2], dhlen = d[3];
    if (halen > max_ids || dhlen > max_ids) return failure::incorrect_payload;
    const uint8_t* hashes = d + 4;
    const uint8_t* dhs = d + 4 + max_ids;
    // The hash whose digest is as long as the host's key (`nvme gen-dhchap-key` pairs them),
    // else the first the host offers that we know.
    uint8_t want = _p.host_key.key.size() == 64   ? hash_sha512
                   : _p.host_key.key.size() == 48 ? hash_sha384
                                                  : hash_sha256;
    _hash = 0;
    for (size_t i = 0; i < halen; ++i)
        if (hashes[i] == want) _hash = want;
    for (size_t i = 0; i < halen && !_hash; ++i)
        if (hash_len(hashes[i])) _hash = hashes[i];
    if (!_hash) return failure::hash_unusable;
    // The first group of our preference that the host offers.
    bool found = false;
    for (uint8_t g : _p.dhgroups) {
        for (size_t i = 0; i < dhlen && !found; ++i)
            if (dhs[i] == g && group_of(g)) found = true;
        if (found) {
            _dhgroup = g;
            break;
        }
    }
    if (!found) return failure::dhgroup_unusable;
    return failure::none;
}

failure session::reply(std::span<const uint8_t> m) {
    if (m.size() < reply_hdr) return failure::incorrect_payload;
    const uint8_t hl = m[6], cvalid = m[8];
    const uint16_t dhvlen = le16(&m[10]);
    const uint32_t s2 = le32(&m[12]);
    const size_t len = hash_len(_hash);
    if (hl != len || cvalid > 1) return failure::incorrect_payload;
    if (reply_hdr + 2 * size_t(hl) + dhvlen > m.size()) return failure::incorrect_payload;
    const auto rval = m.subspan(reply_hdr, hl);
    const auto c2 = m.subspan(reply_hdr + hl, hl);
    const auto dhv = m.subspan(reply_hdr + 2 * size_t(hl), dhvlen);
    std::vector<uint8_t> c1 = _c1;
    if (_dhgroup != dh_null) {
        if (dhvlen != dhgroup_bytes(_dhgroup) || !_dh) return failure::incorrect_payload;
        auto k = _dh->derive(dhv);
        if (!k) return failure::dhgroup_unusable;
        _session_key = std::move(*k);
        c1 = augmented_challenge(_hash, _session_key.b, _c1);
    } else if (dhvlen != 0) {
        return failure::incorrect_payload;
    }
    secret_bytes kh = transform_key(_p.host_key, _p.hostnqn);
    auto expect = host_response(_hash, kh.b, c1, _s1, _t_id, 0, _p.hostnqn, _p.subnqn);
    if (CRYPTO_memcmp(expect.data(), rval.data(), len) != 0) return failure::failed;
    // S2 = 0 with a C2: no bidirectional authentication (the C2 is for a generated PSK).
    if (cvalid && s2 != 0) {
        if (!_p.ctrl_key) return failure::failed;  // the host wants us to prove a key we do not have
        _c2.assign(c2.begin(), c2.end());
        _s2 = s2;
    }
    return failure::none;
}

std::vector<uint8_t> session::challenge_message() {
    const size_t hl = hash_len(_hash);
    _c1 = random_bytes(hl);
    do {
        auto s = random_bytes(4);
        _s1 = le32(s.data());
    } while (_s1 == 0);
    std::vector<uint8_t> dhv;
    if (_dhgroup != dh_null) {
        _dh = dh_key::generate(_dhgroup);
        dhv = _dh->public_value();
    }
    std::vector<uint8_t> out(challenge_hdr + hl + dhv.size());
    out[0] = type_dhchap;
    out[1] = id_challenge;
    put16(&out[4], _t_id);
    out[6] = static_cast<uint8_t>(hl);
    out[8] = _hash;
    out[9] = _dhgroup;
    put16(&out[10], static_cast<uint16_t>(dhv.size()));
    put32(&out[12], _s1);
    std::memcpy(&out[challenge_hdr], _c1.data(), hl);
    if (!dhv.empty()) std::memcpy(&out[challenge_hdr + hl], dhv.data(), dhv.size());
    return out;
}

std::vector<uint8_t> session::success1_message() {
    const size_t hl = hash_len(_hash);
    std::vector<uint8_t> out(success1_hdr + hl);
    out[0] = type_dhchap;
    out[1] = id_success1;
    put16(&out[4], _t_id);
    out[6] = static_cast<uint8_t>(hl);
    if (!_c2.empty()) {
        std::vector<uint8_t> c2 = _c2;
        if (_dhgroup != dh_null) c2 = augmented_challenge(_hash, _session_key.b, _c2);
        secret_bytes kc = transform_key(*_p.ctrl_key, _p.subnqn);
        auto r2 = ctrl_response(_hash, kc.b, c2, _s2, _t_id, 0, _p.subnqn, _p.hostnqn);
        out[8] = 1;  // RVALID
        std::memcpy(&out[success1_hdr], r2.data(), hl);
    }
    return out;
}

std::vector<uint8_t> session::failure1_message() const {
    std::vector<uint8_t> out(failure_len);
    out[0] = type_common;
    out[1] = id_failure1;
    put16(&out[4], _t_id);
    out[6] = reason_failure;
    out[7] = static_cast<uint8_t>(_reason);
    return out;
}

std::optional<std::vector<uint8_t>> session::on_receive(uint32_t al) {
    std::vector<uint8_t> out;
    switch (_step) {
        case step::send_challenge:
            try {
                out = challenge_message();
            } catch (const std::runtime_error&) {
                fail(failure::failed);
                out = failure1_message();
                end(false);
                break;
            }
            _step = step::expect_reply;
            break;
        case step::send_success1:
            out = success1_message();
            if (_c2.empty())
                end(true);
            else
                _step = step::expect_success2;
            break;
        case step::send_failure1:
            out = failure1_message();
            end(false);
            break;
        default:
            // Nothing to answer now: out of turn.
            _reason = failure::incorrect_message;
            out = failure1_message();
            end(false);
            break;
    }
    if (out.size() > al) {
        if (_step != step::failed) {
            _reason = failure::incorrect_payload;
            end(false);
        }
        return std::nullopt;
    }
    return out;
}

// ---- backoff ----

uint64_t backoff::delay_ns(const std::string& address, uint64_t now_ns) {
    std::lock_guard g(_lock);
    auto it = _by_address.find(address);
    if (it == _by_address.end()) return 0;
    if (now_ns - it->second.last_ns > forget_after_ns) {
        _by_address.erase(it);
        return 0;
    }
    const unsigned shift = std::min(it->second.failures - 1, 16u);
    return std::min(first_delay_ns << shift, max_delay_ns);
}

void backoff::failed(const std::string& address, uint64_t now_ns) {
    std::lock_guard g(_lock);
    if (_by_address.size() >= max_addresses && !_by_address.count(address)) {
        auto stalest = _by_address.begin();
        for (auto it = _by_address.begin(); it != _by_address.end(); ++it)
            if (it->second.last_ns < stalest->second.last_ns) stalest = it;
        _by_address.erase(stalest);
    }
    record& r = _by_address[address];
    if (r.failures && now_ns - r.last_ns > forget_after_ns) r.failures = 0;
    ++r.failures;
    r.last_ns = now_ns;
}

void backoff::succeeded(const std::string& address) {
    std::lock_guard g(_lock);
    _by_address.erase(address);
}

}  // namespace ferry::target::auth
