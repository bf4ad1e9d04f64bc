// The host's side of DH-HMAC-CHAP over a test_host.hh connection: builds the messages byte by
// byte from the spec's layouts (so tests can also send malformed ones) and computes the
// responses with the known-answer-tested primitives of target/auth.hh.
#pragma once

#include <openssl/rand.h>

#include <optional>
#include <string>
#include <vector>

#include "target/auth.hh"
#include "test_host.hh"

namespace ferry::test {

namespace auth = target::auth;

struct auth_result {
    bool ok = false;
    uint8_t failure = 0;            // Failure1 reason code explanation the target sent (0: none)
    uint8_t hash = 0, dhgroup = 0;  // what the target's challenge chose
    bool ctrl_verified = false;     // bidirectional: the controller's response checked out
    uint16_t status = 0;            // first non-zero NVMe status of an Auth command
};

class dhchap_host {
public:
    dhchap_host(host_conn& c, std::string hostnqn, std::string subnqn, const std::string& key,
                const std::string& ctrl_key = "")
        : _c(c), _hostnqn(std::move(hostnqn)), _subnqn(std::move(subnqn)), _key(target::parse_dhchap_secret(key)) {
        if (!ctrl_key.empty()) _ctrl_key = target::parse_dhchap_secret(ctrl_key);
    }

    std::vector<uint8_t> hashes{auth::hash_sha256, auth::hash_sha384, auth::hash_sha512};
    std::vector<uint8_t> groups{auth::dh_null,      auth::dh_ffdhe2048, auth::dh_ffdhe3072,
                                auth::dh_ffdhe4096, auth::dh_ffdhe6144, auth::dh_ffdhe8192};
    uint16_t t_id = 1;
    bool corrupt_response = false;  // flips a bit of R1

    // The Authentication Send / Receive commands; `secp` etc. to send malformed SQEs.
    response send(const std::vector<uint8_t>& msg, uint8_t secp = auth::secp_dhchap, uint8_t spsp0 = 1,
                  uint8_t spsp1 = 1, std::optional<uint32_t> tl = std::nullopt) {
        auto c = sqe(nvme::fctype::auth_send, secp, spsp0, spsp1, tl.value_or(static_cast<uint32_t>(msg.size())));
        return _c.cmd(c, msg);
    }
    response recv(uint32_t al, uint8_t secp = auth::secp_dhchap) {
        auto c = sqe(nvme::fctype::auth_recv, secp, 1, 1, al);
        return _c.cmd(c, {}, al);
    }
    // Sends the Receive without waiting (the target may hold its answer back); returns its cid.
    uint16_t send_recv(uint32_t al) {
        auto c = sqe(nvme::fctype::auth_recv, auth::secp_dhchap, 1, 1, al);
        _c.send_capsule(c, {}, true, al);
        return c.cid;
    }

    std::vector<uint8_t> negotiate_message(uint8_t sc_c = 0, uint8_t napd = 1, uint8_t authid = 1) const {
        std::vector<uint8_t> m(8 + 64 * std::max<size_t>(napd, 1));
        m[0] = 0x00;
        m[1] = 0x00;
        put16(&m[4], t_id);
        m[6] = sc_c;
        m[7] = napd;
        m[8] = authid;
        m[10] = static_cast<uint8_t>(hashes.size());
        m[11] = static_cast<uint8_t>(groups.size());
        for (size_t i = 0; i < hashes.size() && i < 30; ++i) m[12 + i] = hashes[i];
        for (size_t i = 0; i < groups.size() && i < 30; ++i) m[12 + 30 + i] = groups[i];
        return m;
    }

    // The whole exchange; stops at the first failure.
    auth_result run() {
        auth_result r;
        auto s = send(negotiate_message());
        if (s.status) return r.status = s.status, r;
        auto ch = recv(2048);
        if (ch.status) return r.status = ch.status, r;
        const auto& d = ch.data;
        if (d[0] == 0x00 && d[1] == 0xF1) return r.failure = d[7], r;
        if (d[0] != 0x01 || d[1] != 0x01) return r;
        const uint8_t hl = d[6];
        r.hash = d[8];
        r.dhgroup = d[9];
        const uint16_t dhvlen = static_cast<uint16_t>(d[10] | d[11] << 8);
        const uint32_t s1 = le32(&d[12]);
        if (le16(&d[4]) != t_id || hl != auth::hash_len(r.hash)) return r;
        std::vector<uint8_t> c1(d.begin() + 16, d.begin() + 16 + hl);
        std::vector<uint8_t> ctrl_pub(d.begin() + 16 + hl, d.begin() + 16 + hl + dhvlen);
        std::vector<uint8_t> host_pub;
        auth::secret_bytes skey;
        if (r.dhgroup != auth::dh_null) {
            auto mine = auth::dh_key::generate(r.dhgroup);
            auto k = mine.derive(ctrl_pub);
            if (!k) return r;
            skey = *k;
            host_pub = mine.public_value();
            c1 = auth::augmented_challenge(r.hash, skey.b, c1);
        }
        auto kh = auth::transform_key(_key, _hostnqn);
        auto r1 = auth::host_response(r.hash, kh.b, c1, s1, t_id, 0, _hostnqn, _subnqn);
        if (corrupt_response) r1[0] ^= 1;
        std::vector<uint8_t> c2(hl);
        uint32_t s2 = 0;
        if (_ctrl_key) {
            RAND_bytes(c2.data(), hl);
            s2 = 0x01020304;
        }
        std::vector<uint8_t> m(16 + 2 * hl + host_pub.size());
        m[0] = 0x01;
        m[1] = 0x02;
        put16(&m[4], t_id);
        m[6] = hl;
        m[8] = _ctrl_key ? 1 : 0;
        put16(&m[10], static_cast<uint16_t>(host_pub.size()));
        put32(&m[12], s2);
        std::copy(r1.begin(), r1.end(), m.begin() + 16);
        std::copy(c2.begin(), c2.end(), m.begin() + 16 + hl);
        std::copy(host_pub.begin(), host_pub.end(), m.begin() + 16 + 2 * hl);
        s = send(m);
        if (s.status) return r.status = s.status, r;
        auto s1m = recv(256);
        if (s1m.status) return r.status = s1m.status, r;
        const auto& e = s1m.data;
        if (e[0] == 0x00 && e[1] == 0xF1) return r.failure = e[7], r;
        if (e[0] != 0x01 || e[1] != 0x03 || e[6] != hl) return r;
        if (_ctrl_key) {
            if (e[8] != 1) return r;
            if (r.dhgroup != auth::dh_null) c2 = auth::augmented_challenge(r.hash, skey.b, c2);
            auto kc = auth::transform_key(*_ctrl_key, _subnqn);
            auto r2 = auth::ctrl_response(r.hash, kc.b, c2, s2, t_id, 0, _subnqn, _hostnqn);
            r.ctrl_verified = std::equal(r2.begin(), r2.end(), e.begin() + 16);
            std::vector<uint8_t> fin(16);
            fin[0] = r.ctrl_verified ? 0x01 : 0x00;
            fin[1] = r.ctrl_verified ? 0x04 : 0xF0;
            put16(&fin[4], t_id);
            if (!r.ctrl_verified) fin[6] = 1, fin[7] = 1;
            s = send(fin);
            if (s.status) return r.status = s.status, r;
            r.ok = r.ctrl_verified;
            return r;
        }
        r.ok = true;
        return r;
    }

    static void put16(uint8_t* p, uint16_t v) {
        p[0] = static_cast<uint8_t>(v);
        p[1] = static_cast<uint8_t>(v >> 8);
    }
    static void put32(uint8_t* p, uint32_t v) {
        for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
    }
    static uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
    static uint32_t le32(const uint8_t* p) {
        return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
    }

private:
    nvme::sqe sqe(uint8_t fctype, uint8_t secp, uint8_t spsp0, uint8_t spsp1, uint32_t len) {
        nvme::fabrics_sqe f{};
        f.opcode = nvme::admin_opc::fabrics;
        f.cid = _c.make(0).cid;
        f.fctype = fctype;
        f.specific[1] = spsp0;
        f.specific[2] = spsp1;
        f.specific[3] = secp;
        for (int i = 0; i < 4; ++i) f.specific[4 + i] = static_cast<uint8_t>(len >> (8 * i));
        return reinterpret_cast<const nvme::sqe&>(f);
    }

    host_conn& _c;
    std::string _hostnqn, _subnqn;
    target::dhchap_secret _key;
    std::optional<target::dhchap_secret> _ctrl_key;
};

}  // namespace ferry::test
