// In-band authentication, DH-HMAC-CHAP (NVMe base spec 2.x 8.3.4 / 8.13.5): the computations
// and the controller's side of the exchange on one queue. The queue (fabrics_cmd.cc) feeds it
// the Authentication Send messages and asks it for the Authentication Receive answers; every
// byte of a received message is checked here. Nothing here logs a key, challenge or response.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "target/dhchap.hh"

namespace ferry::target::auth {

inline constexpr uint16_t sc_auth_required = 0x191;        // SCT 1 SC 91h, what Linux nvmet answers
inline constexpr uint32_t connect_authreq_atr = 1u << 17;  // Connect result dword 0, AUTHREQ.ATR
inline constexpr uint8_t secp_dhchap = 0xE9;               // SECP; SPSP0 = SPSP1 = 01h

// Hash function and DH group identifiers.
inline constexpr uint8_t hash_sha256 = 1, hash_sha384 = 2, hash_sha512 = 3;
inline constexpr uint8_t dh_null = 0, dh_ffdhe2048 = 1, dh_ffdhe3072 = 2, dh_ffdhe4096 = 3, dh_ffdhe6144 = 4,
                         dh_ffdhe8192 = 5;
size_t hash_len(uint8_t hash);            // 0: not a hash function of DH-HMAC-CHAP
const char* hash_name(uint8_t hash);      // "sha256", ...; "?" when unknown
size_t dhgroup_bytes(uint8_t group);      // size of a DH value (0 for the NULL group)
const char* dhgroup_name(uint8_t group);  // "null", "ffdhe2048", ...; "?" when unknown
// "null,ffdhe2048" -> ids (throws std::invalid_argument naming the bad entry)
std::vector<uint8_t> parse_dhgroups(std::string_view list);

// AUTH_Failure reason code explanations (reason code 01h, "authentication failure").
enum class failure : uint8_t {
    none = 0,
    failed = 1,           // the response did not verify
    not_usable = 2,       // no authentication protocol in common
    concat_mismatch = 3,  // secure channel concatenation asked (not built)
    hash_unusable = 4,
    dhgroup_unusable = 5,
    incorrect_payload = 6,
    incorrect_message = 7,  // a message out of turn
};
const char* failure_name(failure f);

// Bytes wiped (OPENSSL_cleanse) when they go.
struct secret_bytes {
    std::vector<uint8_t> b;
    secret_bytes() = default;
    explicit secret_bytes(size_t n) : b(n) {}
    secret_bytes(const secret_bytes&) = default;
    secret_bytes& operator=(const secret_bytes&) = default;
    ~secret_bytes();
};

// The computations (known-answer tested against tests/unit/dhchap_vectors.py).
std::vector<uint8_t> hmac(uint8_t hash, std::span<const uint8_t> key, std::span<const uint8_t> data);
// Kh = HMAC(hash of the secret's transform, key, NQN || "NVMe-over-Fabrics"), or the key itself
// when its transform is 00. The host key goes with the host NQN, the controller key with the
// subsystem NQN (as Linux does).
secret_bytes transform_key(const dhchap_secret& s, std::string_view nqn);
// HMAC(hash, H(session key), challenge): the challenge used when a DH group is in play.
std::vector<uint8_t> augmented_challenge(uint8_t hash, std::span<const uint8_t> session_key,
                                         std::span<const uint8_t> challenge);
// R1 = HMAC(Kh, C1 || S1 (LE32) || T_ID (LE16) || SC_C || "HostHost" || NQNh || 00h || NQNc)
std::vector<uint8_t> host_response(uint8_t hash, std::span<const uint8_t> transformed_key,
                                   std::span<const uint8_t> challenge, uint32_t seq, uint16_t t_id, uint8_t sc_c,
                                   std::string_view hostnqn, std::string_view subnqn);
// R2 = HMAC(Kc, C2 || S2 || T_ID || SC_C || "Controller" || NQNc || 00h || NQNh)
std::vector<uint8_t> ctrl_response(uint8_t hash, std::span<const uint8_t> transformed_key,
                                   std::span<const uint8_t> challenge, uint32_t seq, uint16_t t_id, uint8_t sc_c,
                                   std::string_view subnqn, std::string_view hostnqn);

// A finite-field DH key pair of an RFC 7919 group (OpenSSL EVP_PKEY).
class dh_key {
public:
    // A fresh key pair; throws std::runtime_error.
    static dh_key generate(uint8_t group);
    // A fixed private value (tests); its public value is not computed.
    static dh_key from_private(uint8_t group, std::span<const uint8_t> priv);
    dh_key(dh_key&&) noexcept;
    dh_key& operator=(dh_key&&) noexcept;
    ~dh_key();
    // g^x mod p, big endian, padded to the group size.
    const std::vector<uint8_t>& public_value() const { return _public; }
    // The shared secret (g^xy mod p, padded to the group size); nullopt when the peer's value is
    // not a valid public key of the group (wrong size, out of range, not in the subgroup).
    std::optional<secret_bytes> derive(std::span<const uint8_t> peer) const;

private:
    dh_key() = default;
    void* _pkey = nullptr;  // EVP_PKEY
    uint8_t _group = 0;
    std::vector<uint8_t> _public;
};

// What a queue's controller side knows: both NQNs and the keys of that host.
struct session_params {
    std::string hostnqn;
    std::string subnqn;
    dhchap_secret host_key;
    std::optional<dhchap_secret> ctrl_key;  // set: the host may ask for bidirectional
    std::vector<uint8_t> dhgroups;          // the controller's choice, in order of preference
};

// One queue's exchange: AUTH_Negotiate -> Challenge -> Reply -> Success1 (-> Success2), or an
// AUTH_Failure1 to the host / an AUTH_Failure2 from it. A new AUTH_Negotiate restarts it
// (re-authentication: the queue stays authenticated until that one fails).
class session {
public:
    enum class outcome { none, succeeded, failed };
    explicit session(session_params p);

    // Authentication Send: one whole message (TL bytes).
    void on_send(std::span<const uint8_t> msg);
    // An AUTH_Negotiate (which starts a new exchange, with the parameters then in force).
    static bool starts_exchange(std::span<const uint8_t> msg);
    // The NQNs, keys and groups the next exchange uses (the host's keys may have been rotated).
    void set_params(session_params p) { _p = std::move(p); }
    // Authentication Receive: the message to return, or nullopt when `al` cannot hold it (the
    // command fails with Invalid Field and the exchange fails).
    std::optional<std::vector<uint8_t>> on_receive(uint32_t al);

    bool authenticated() const { return _authenticated; }
    // A Failure1 was sent or a Failure2 received, or the exchange broke: the queue is done.
    bool failed() const { return _step == step::failed; }
    // True between AUTH_Negotiate and its end (an answer the host waits for is next or pending).
    bool in_progress() const { return _step != step::idle && _step != step::failed; }
    // The end of an exchange once (then none): for the log and the per-address back-off.
    outcome take_outcome();
    failure reason() const { return _reason; }
    uint8_t hash() const { return _hash; }
    uint8_t dhgroup() const { return _dhgroup; }
    bool bidirectional() const { return !_c2.empty(); }
    const session_params& params() const { return _p; }

private:
    enum class step : uint8_t {
        idle,             // waiting for AUTH_Negotiate
        send_challenge,   // Receive answers DH-HMAC-CHAP_Challenge
        expect_reply,     // Send carries DH-HMAC-CHAP_Reply
        send_success1,    // Receive answers DH-HMAC-CHAP_Success1
        expect_success2,  // Send carries DH-HMAC-CHAP_Success2 (bidirectional)
        send_failure1,    // Receive answers AUTH_Failure1
        failed,
    };
    void fail(failure why);  // answer the next Receive with AUTH_Failure1
    void end(bool ok);
    failure negotiate(std::span<const uint8_t> m);
    failure reply(std::span<const uint8_t> m);
    std::vector<uint8_t> challenge_message();
    std::vector<uint8_t> success1_message();
    std::vector<uint8_t> failure1_message() const;

    session_params _p;
    step _step = step::idle;
    bool _authenticated = false;
    outcome _outcome = outcome::none;
    failure _reason = failure::none;
    uint16_t _t_id = 0;
    uint8_t _hash = 0;
    uint8_t _dhgroup = 0;
    uint32_t _s1 = 0, _s2 = 0;
    std::vector<uint8_t> _c1, _c2;
    std::optional<dh_key> _dh;
    secret_bytes _session_key;
};

// Slows down guessing: after a failed authentication from an address, that address's next
// authentication answers are held back: 250 ms after one failure, doubling with each further
// one up to 8 s; a success or 10 minutes without a failure forget it. Other addresses are never
// affected. Thread-safe (reactors of every connection share it; taken on the auth path only).
class backoff {
public:
    static constexpr uint64_t first_delay_ns = 250'000'000;
    static constexpr uint64_t max_delay_ns = 8'000'000'000;
    static constexpr uint64_t forget_after_ns = 600'000'000'000;
    static constexpr size_t max_addresses = 4096;  // beyond: the stalest is forgotten

    uint64_t delay_ns(const std::string& address, uint64_t now_ns);
    void failed(const std::string& address, uint64_t now_ns);
    void succeeded(const std::string& address);

private:
    struct record {
        unsigned failures = 0;
        uint64_t last_ns = 0;
    };
    std::mutex _lock;
    std::map<std::string, record> _by_address;
};

}  // namespace ferry::target::auth
