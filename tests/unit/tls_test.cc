// NVMe/TCP over TLS 1.3 against real reactors (both socket engines): an OpenSSL client with a
// PSK tunnels a test host's plaintext (tls_tunnel), so ICReq, Connect and I/O run exactly as
// in the plain tests. The TLS PSKs and identities are the independent vectors of
// tests/unit/vectors/tls_psk_vectors.py (what a Linux host with nvme-cli 2.13 derives).
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>

#include <atomic>
#include <set>
#include <thread>

#include "served_target.hh"

using namespace ferry;
using namespace ferry::test;
namespace tp = ferry::transport;

namespace {

const char* tls_host = "nqn.2014-08.org.nvmexpress:uuid:6e766d66-6c61-4200-8000-000000000001";
const char* tls_nqn = "nqn.2024-01.io.ferry:tls";
const char* lab_key = "NVMeTLSkey-1:01:xVClyHM7/Vjg/SafWM8HIejVsU3cf9i//WB1DL4nCJ6PgSKJ:";
const char* key384 = "NVMeTLSkey-1:02:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vcSEgBQ==:";

// From tls_psk_vectors.py: lab key, libnvme's (compat) derivation, identity version 0.
const char* lab_v0_tls_psk = "2eaf657159a6958681bfb0c793322bd51a7560f08201c8557818218c7efcf510";
// key384, libnvme's (compat) derivation, identity version 0.
const char* k384_v0_tls_psk =
    "90657553077fb87def19186bc35e12ce973fd2186054ccbad8ec787ffdb9ed75e3032d9345d8b414cd42a4d661083c2d";
// key384, RFC 8446 labels, identity version 1 (with its digest).
const char* k384_v1_digest = "9JC+z6WCBZdSQ+E+xnmgqPo7FvX/WEIVA/UIDz6ljxNgPZG3S2OJ3Q+XwYsMpzC3";
const char* k384_v1_tls_psk =
    "f29363ab7b0511045e46259e1807e4d7d2027015031002f52f935e83bb06ee72411fa9fc56efcef61010eff3529fb195";

std::vector<uint8_t> unhex(const std::string& h) {
    std::vector<uint8_t> v;
    for (size_t i = 0; i + 1 < h.size(); i += 2) v.push_back(uint8_t(std::stoi(h.substr(i, 2), nullptr, 16)));
    return v;
}

target::target_config tls_config(const char* key) {
    auto cfg = test_config();
    target::subsystem_config s;
    s.nqn = tls_nqn;
    s.hosts.push_back(tls_host);
    s.hosts.push_back(host_a);  // a host without keys
    s.keys[tls_host].tls_psk = key;
    s.namespaces.push_back(
        {1, target::backend_kind::ram, 1u << 20, 4096, std::nullopt, std::nullopt, std::nullopt, {}, {}, 0, {}});
    cfg.subsystems.push_back(s);
    return cfg;
}

// A TLS 1.3 PSK client on a real TCP connection to the target, forwarding plaintext to and
// from `app_fd` (a socketpair end a host_conn drives) on its own thread.
struct tls_tunnel {
    std::string identity;
    std::vector<uint8_t> psk;
    bool sha384 = false;
    SSL_CTX* ctx = nullptr;
    SSL* ssl = nullptr;
    int tcp = -1, app_fd = -1, inner = -1;
    bool established = false;
    std::string cipher;
    std::atomic<bool> stop{false};
    std::thread pump;

    static int use_session(SSL* s, const EVP_MD*, const unsigned char** id, size_t* idlen, SSL_SESSION** sess) {
        auto* t = static_cast<tls_tunnel*>(SSL_get_app_data(s));
        const unsigned char suite[2] = {0x13, uint8_t(t->sha384 ? 0x02 : 0x01)};
        SSL_SESSION* ss = SSL_SESSION_new();
        SSL_SESSION_set1_master_key(ss, t->psk.data(), t->psk.size());
        SSL_SESSION_set_cipher(ss, SSL_CIPHER_find(s, suite));
        SSL_SESSION_set_protocol_version(ss, TLS1_3_VERSION);
        *id = reinterpret_cast<const unsigned char*>(t->identity.data());
        *idlen = t->identity.size();
        *sess = ss;
        return 1;
    }

    tls_tunnel(uint16_t port, std::string id, std::vector<uint8_t> key, bool use_sha384)
        : identity(std::move(id)), psk(std::move(key)), sha384(use_sha384) {
        tcp = dial(port);
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        // Both suites, SHA-256 first, as tlshd (GnuTLS) offers them: the server must pick the
        // one of the PSK's hash.
        SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384");
        SSL_CTX_set_psk_use_session_callback(ctx, use_session);
        ssl = SSL_new(ctx);
        SSL_set_app_data(ssl, this);
        SSL_set_fd(ssl, tcp);
        established = SSL_connect(ssl) == 1;
        ERR_clear_error();
        if (!established) return;
        cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
        app_fd = fds[0];
        inner = fds[1];
        pump = std::thread([this] { run(); });
    }
    void run() {
        uint8_t buf[65536];
        while (!stop) {
            pollfd p[2] = {{inner, POLLIN, 0}, {tcp, POLLIN, 0}};
            if (SSL_pending(ssl) == 0 && ::poll(p, 2, 50) <= 0) continue;
            if (p[0].revents & (POLLIN | POLLHUP)) {
                ssize_t n = ::recv(inner, buf, sizeof buf, MSG_DONTWAIT);
                if (n <= 0) break;
                if (SSL_write(ssl, buf, int(n)) <= 0) break;
            }
            if (SSL_pending(ssl) > 0 || (p[1].revents & (POLLIN | POLLHUP))) {
                int n = SSL_read(ssl, buf, sizeof buf);
                if (n <= 0) break;
                for (int off = 0; off < n;) {
                    ssize_t w = ::send(inner, buf + off, size_t(n - off), MSG_NOSIGNAL);
                    if (w <= 0) return;
                    off += int(w);
                }
            }
        }
        ::shutdown(inner, SHUT_RDWR);  // the host sees the target's close as EOF
    }
    // The host side of the tunnel (host_conn owns and closes it).
    int take_app_fd() {
        int fd = app_fd;
        app_fd = -1;
        return fd;
    }
    ~tls_tunnel() {
        stop = true;
        if (pump.joinable()) pump.join();
        if (ssl) SSL_free(ssl);
        SSL_CTX_free(ctx);
        for (int fd : {tcp, app_fd, inner})
            if (fd >= 0) ::close(fd);
    }
};

std::string v0_identity() {
    return std::string("NVMe0R01 ") + tls_host + " " + tls_nqn;
}
std::string v1_384_identity() {
    return std::string("NVMe1R02 ") + tls_host + " " + tls_nqn + " " + k384_v1_digest;
}

// ICReq, Connect (admin), enable, then an I/O queue over TLS with a write and a read back.
void run_io_over(uint16_t port, const std::string& id, const std::vector<uint8_t>& key, bool sha384) {
    tls_tunnel ta(port, id, key, sha384);
    ASSERT_TRUE(ta.established);
    EXPECT_EQ(ta.cipher, sha384 ? "TLS_AES_256_GCM_SHA384" : "TLS_AES_128_GCM_SHA256");
    host_conn admin(ta.take_app_fd(), false, false);
    uint16_t cntlid = admin.bring_up_admin(tls_nqn, tls_host);
    tls_tunnel tq(port, id, key, sha384);
    ASSERT_TRUE(tq.established);
    host_conn q(tq.take_app_fd(), true, true);
    q.icreq();
    ASSERT_EQ(q.connect(tls_nqn, tls_host, 1, cntlid, 127, 0).status, 0);
    auto d = pattern(256 * 1024, 3);
    EXPECT_EQ(q.cmd(q.rw(nvme::io_opc::write, 1, 0, 64), d, 0, false).status, 0);
    auto r = q.cmd(q.rw(nvme::io_opc::read, 1, 0, 64), {}, 256 * 1024);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.data, d);
}

}  // namespace

class tls_engines : public ::testing::TestWithParam<tp::socket_engine> {
protected:
    // A target with `key`'s host and subsystem (tls_config) on this engine, its listener in `mode`.
    serve_options options(const char* key, tp::tls_mode mode) const {
        serve_options o;
        o.engine = GetParam();
        o.cfg = tls_config(key);
        o.tls = mode;
        return o;
    }
};
INSTANTIATE_TEST_SUITE_P(engine, tls_engines, ::testing::Values(tp::socket_engine::posix, tp::socket_engine::uring),
                         [](const auto& info) { return info.param == tp::socket_engine::posix ? "posix" : "uring"; });

TEST_P(tls_engines, sha256_v0_identity_connects_and_runs_io) {
    served_target st(2, options(lab_key, tp::tls_mode::required));
    run_io_over(st.port, v0_identity(), unhex(lab_v0_tls_psk), false);
}

TEST_P(tls_engines, sha384_v1_identity_connects_and_runs_io) {
    served_target st(1, options(key384, tp::tls_mode::required));
    run_io_over(st.port, v1_384_identity(), unhex(k384_v1_tls_psk), true);
}

// A host that binds its SHA-384 PSK (NVMe0R02, 48 bytes) with HMAC-SHA256 and offers
// TLS_AES_128_GCM_SHA256 gets that suite: the binder's hash decides, not the identity's.
TEST_P(tls_engines, sha384_psk_with_a_sha256_binder_runs_aes128) {
    served_target st(1, options(key384, tp::tls_mode::required));
    run_io_over(st.port, std::string("NVMe0R02 ") + tls_host + " " + tls_nqn, unhex(k384_v0_tls_psk), false);
}

// What the target sends as it closes reaches the host before close_notify: the response to a
// Disconnect, and a C2HTermReq after a protocol error.
TEST_P(tls_engines, last_pdus_before_close_are_delivered) {
    served_target st(1, options(lab_key, tp::tls_mode::required));
    tls_tunnel ta(st.port, v0_identity(), unhex(lab_v0_tls_psk), false);
    ASSERT_TRUE(ta.established);
    host_conn admin(ta.take_app_fd(), false, false);
    const uint16_t cntlid = admin.bring_up_admin(tls_nqn, tls_host);
    {
        tls_tunnel tq(st.port, v0_identity(), unhex(lab_v0_tls_psk), false);
        ASSERT_TRUE(tq.established);
        host_conn q(tq.take_app_fd(), false, false);
        q.icreq();
        ASSERT_EQ(q.connect(tls_nqn, tls_host, 1, cntlid, 127, 0).status, 0);
        nvme::fabrics_sqe d{};
        d.opcode = nvme::admin_opc::fabrics;
        d.cid = q.next_cid();
        d.fctype = nvme::fctype::disconnect;
        auto r = q.cmd(reinterpret_cast<const nvme::sqe&>(d));
        EXPECT_EQ(r.status, 0);
        EXPECT_TRUE(q.target_closed());
    }
    tls_tunnel tq(st.port, v0_identity(), unhex(lab_v0_tls_psk), false);
    ASSERT_TRUE(tq.established);
    host_conn q(tq.take_app_fd(), false, false);
    q.icreq();
    ASSERT_EQ(q.connect(tls_nqn, tls_host, 1, cntlid, 127, 0).status, 0);
    auto data = pattern(4096, 1);
    q.send_h2c(77, 99, 0, data.data(), 4096, true);  // no such transfer (TTAG 99)
    auto t = q.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, tp::fes::invalid_header_field);
    EXPECT_EQ(t->fei, 10u);  // TTAG
    EXPECT_TRUE(q.target_closed());
}

TEST_P(tls_engines, wrong_psk_fails_the_handshake) {
    served_target st(1, options(lab_key, tp::tls_mode::required));
    auto wrong = unhex(lab_v0_tls_psk);
    wrong[0] ^= 1;
    tls_tunnel t(st.port, v0_identity(), wrong, false);
    EXPECT_FALSE(t.established);
    // Unknown identity, and a host without a PSK for the subsystem, fail too.
    tls_tunnel u(st.port, "NVMe0R01 nqn.x nqn.y", unhex(lab_v0_tls_psk), false);
    EXPECT_FALSE(u.established);
    tls_tunnel v(st.port, std::string("NVMe0R01 ") + host_a + " " + tls_nqn, unhex(lab_v0_tls_psk), false);
    EXPECT_FALSE(v.established);
}

TEST_P(tls_engines, plain_connection_to_required_listener_is_refused) {
    served_target st(1, options(lab_key, tp::tls_mode::required));
    host_conn c(dial(st.port), false, false);
    transport::ic_req_pdu req{};
    transport::fill_header(req.ch, transport::pdu_type::ic_req, 0, sizeof(req), 0, sizeof(req));
    c.send_raw(&req, sizeof(req));
    EXPECT_TRUE(c.target_closed());  // no ICResp: closed before any PDU was parsed
}

TEST_P(tls_engines, allowed_listener_takes_plain_and_tls) {
    served_target st(1, options(lab_key, tp::tls_mode::allowed));
    host_conn plain(dial(st.port), false, false);
    plain.bring_up_admin(open_nqn, host_a);
    run_io_over(st.port, v0_identity(), unhex(lab_v0_tls_psk), false);
}

TEST_P(tls_engines, none_listener_does_not_attempt_tls) {
    served_target st(1, options(lab_key, tp::tls_mode::none));
    tls_tunnel t(st.port, v0_identity(), unhex(lab_v0_tls_psk), false);
    EXPECT_FALSE(t.established);
}

// ---- target side: Connect over TLS names the identity's NQNs; keys force TLS; discovery log

TEST(tls_target, connect_over_tls_must_name_the_identitys_host_and_subsystem) {
    serve_options o;
    o.cfg = tls_config(lab_key);
    o.tls = tp::tls_mode::allowed;
    served_target st(1, o);
    {
        tls_tunnel t(st.port, v0_identity(), unhex(lab_v0_tls_psk), false);
        ASSERT_TRUE(t.established);
        host_conn c(t.take_app_fd(), false, false);
        c.icreq();
        auto r = c.connect(tls_nqn, host_a, 0, 0xFFFF);  // host_a is allowed, but not the PSK's host
        EXPECT_EQ(r.status & 0x7ff, nvme::sc::connect_invalid_param);
        EXPECT_EQ(r.cqe.dw0, nvme::connect_ipo_data(offsetof(nvme::connect_data, hostnqn)));
    }
    {
        tls_tunnel t(st.port, v0_identity(), unhex(lab_v0_tls_psk), false);
        ASSERT_TRUE(t.established);
        host_conn c(t.take_app_fd(), false, false);
        c.icreq();
        auto r = c.connect(open_nqn, tls_host, 0, 0xFFFF);  // another subsystem than the PSK's
        EXPECT_EQ(r.status & 0x7ff, nvme::sc::connect_invalid_param);
        EXPECT_EQ(r.cqe.dw0, nvme::connect_ipo_data(offsetof(nvme::connect_data, subnqn)));
    }
}

TEST(tls_target, host_with_a_psk_is_refused_over_plain_tcp) {
    serve_options o;
    o.cfg = tls_config(lab_key);
    o.tls = tp::tls_mode::allowed;
    served_target st(1, o);
    host_conn c(dial(st.port), false, false);
    c.icreq();
    auto r = c.connect(tls_nqn, tls_host, 0, 0xFFFF);
    EXPECT_EQ(r.status & 0x7ff, nvme::sc::connect_invalid_host);
    // A host of the same subsystem without keys connects in plain.
    host_conn b(dial(st.port), false, false);
    b.icreq();
    EXPECT_EQ(b.connect(tls_nqn, host_a, 0, 0xFFFF).status, 0);
}

namespace {
struct listed {
    std::string port, subnqn;
    uint8_t subtype, treq, sectype;
};
std::vector<listed> log_of(const target::target& tgt, const char* host, const std::string& local_addr) {
    tp::connection_info via;
    via.local_addr = local_addr;
    auto page = tgt.discovery_log(host, via);
    nvme::discovery_log_header h;
    std::memcpy(&h, page.data(), sizeof(h));
    std::vector<listed> out;
    for (uint64_t i = 0; i < h.numrec; ++i) {
        nvme::discovery_log_entry e;
        std::memcpy(&e, page.data() + sizeof(h) + i * sizeof(e), sizeof(e));
        out.push_back({std::string(e.trsvcid, strnlen(e.trsvcid, sizeof(e.trsvcid))),
                       std::string(nvme::fixed_string(e.subnqn, 256)), e.subtype, e.treq, e.tsas[0]});
    }
    return out;
}
}  // namespace

TEST(tls_target, discovery_log_treq_and_tsas_follow_the_listener) {
    auto cfg = tls_config(lab_key);
    cfg.listeners.clear();
    cfg.listeners.push_back({"127.0.0.1", 4420, tp::tls_mode::none});
    cfg.listeners.push_back({"127.0.0.1", 4421, tp::tls_mode::allowed});
    cfg.listeners.push_back({"127.0.0.1", 4422, tp::tls_mode::required});
    target::target tgt(cfg);
    // host_a has no PSK: every listener is a path, with the listener's TREQ and SECTYPE (as
    // nvmet: none 0/0, allowed "not required"/TLS 1.3, required "required"/TLS 1.3).
    auto plain_host = log_of(tgt, host_a, "127.0.0.1");
    unsigned tls_subsystem_paths = 0;
    for (const listed& e : plain_host) {
        SCOPED_TRACE(e.port + " " + e.subnqn);
        EXPECT_EQ(e.treq & 0x04, 0x04);  // SQ flow control disable supported
        // 4420 none, 4421 allowed: not required, 4422 required.
        const int want_treq = e.port == "4420" ? 0 : e.port == "4421" ? 2 : 1;
        EXPECT_EQ(e.treq & 3, want_treq);
        EXPECT_EQ(e.sectype, e.port == "4420" ? 0 : 2);
        tls_subsystem_paths += e.subnqn == tls_nqn;
    }
    EXPECT_EQ(tls_subsystem_paths, 3u);
    // tls_host has a PSK for tls_nqn, and Connect refuses it without TLS: that subsystem is
    // not listed on the plain listener, and TLS is required of it where TLS is allowed. Other
    // subsystems' entries and the discovery subsystem's stay as the listener says.
    auto psk_host = log_of(tgt, tls_host, "127.0.0.1");
    std::set<std::string> ports;
    for (const listed& e : psk_host) {
        SCOPED_TRACE(e.port + " " + e.subnqn);
        if (e.subnqn != tls_nqn) {  // the discovery subsystem, the open one: as the listener says
            EXPECT_EQ(e.treq & 3, e.port == "4420" ? 0 : e.port == "4421" ? 2 : 1);
            continue;
        }
        EXPECT_EQ(e.treq & 3, 1);
        EXPECT_EQ(e.sectype, 2);
        ports.insert(e.port);
    }
    EXPECT_EQ(ports, (std::set<std::string>{"4421", "4422"}));
    // Setting or clearing the PSK changes the log: GENCTR moves.
    const uint64_t before = tgt.discovery_genctr();
    tgt.set_host_keys(tls_nqn, tls_host, {});
    EXPECT_GT(tgt.discovery_genctr(), before);
    unsigned paths = 0;
    for (const listed& e : log_of(tgt, tls_host, "127.0.0.1")) paths += e.subnqn == tls_nqn;
    EXPECT_EQ(paths, 3u);
    const uint64_t cleared = tgt.discovery_genctr();
    target::host_keys dhchap_only;
    dhchap_only.dhchap_key = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:";
    tgt.set_host_keys(tls_nqn, tls_host, dhchap_only);  // no PSK before or after: same log
    EXPECT_EQ(tgt.discovery_genctr(), cleared);
}
