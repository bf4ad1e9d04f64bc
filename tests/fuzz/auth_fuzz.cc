// libFuzzer target for the DH-HMAC-CHAP message parser (target/auth.cc, auth::session): the
// input is a sequence of operations on one controller-side exchange. Each operation is a
// header byte (bit 7: Authentication Receive with AL = the next two bytes; else Send of a
// message whose length is the next two bytes, capped by what is left) and its bytes. The first
// byte picks the DH group preference (bit 0: ffdhe2048 first, else NULL) and whether the host
// has a controller key (bit 1). A Send that starts with the byte 0xFF is replaced by a valid
// AUTH_Negotiate (so the fuzzer reaches the Reply parser quickly); seeds in seeds/auth.
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "target/auth.hh"

namespace auth = ferry::target::auth;

namespace {
const char* host_key = "DHHC-1:01:EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi9A/ow7:";
const char* ctrl_key = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:";

std::vector<uint8_t> valid_negotiate() {
    std::vector<uint8_t> m(8 + 64);
    m[4] = 1;      // T_ID
    m[7] = 1;      // NAPD
    m[8] = 1;      // AUTHID DH-HMAC-CHAP
    m[10] = 3;     // HALEN
    m[11] = 6;     // DHLEN
    for (uint8_t i = 0; i < 3; ++i) m[12 + i] = i + 1;
    for (uint8_t i = 0; i < 6; ++i) m[42 + i] = i;
    return m;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    auth::session_params p;
    p.hostnqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555";
    p.subnqn = "nqn.2026-11.io.ferry:fuzz";
    p.host_key = ferry::target::parse_dhchap_secret(host_key);
    if (data[0] & 2) p.ctrl_key = ferry::target::parse_dhchap_secret(ctrl_key);
    p.dhgroups = (data[0] & 1) ? std::vector<uint8_t>{auth::dh_ffdhe2048, auth::dh_null}
                               : std::vector<uint8_t>{auth::dh_null};
    auth::session s(std::move(p));
    size_t at = 1;
    for (int ops = 0; ops < 16 && at + 3 <= size; ++ops) {
        const uint8_t op = data[at];
        const size_t len = size_t(data[at + 1]) | size_t(data[at + 2]) << 8;
        at += 3;
        if (op & 0x80) {
            auto answer = s.on_receive(static_cast<uint32_t>(len));
            if (answer && answer->size() > len) __builtin_trap();  // never more than AL
        } else {
            const size_t n = std::min(len, size - at);
            std::vector<uint8_t> msg(data + at, data + at + n);  // exactly TL bytes, nothing after
            at += n;
            if (!msg.empty() && msg[0] == 0xFF) msg = valid_negotiate();
            s.on_send(msg);
        }
        s.take_outcome();
        if (s.authenticated() && s.failed()) __builtin_trap();
    }
    return 0;
}
