// libFuzzer target for the TLS record path: a hostile peer's bytes into a server connection
// on a TLS-required listener. Input: a flag byte, a split byte and a stream (fuzz_host.hh).
// Flag bit 0 clear: the stream is the raw bytes on the wire (handshake records, alerts,
// garbage; the seeds hold a real ClientHello). Bit 0 set: an in-process OpenSSL client
// first completes a real PSK handshake (the lab key, identity NVMe0R01), then the stream is
// sent as application data through it (bit 1: after a valid ICReq), reaching the decryption
// and the PDU decoder; bit 4 sends it as raw bytes after the handshake instead (records
// that must fail authentication).
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <vector>

#include "fuzz_host.hh"

namespace {

using namespace ferry;

const char* lab_key = "NVMeTLSkey-1:01:xVClyHM7/Vjg/SafWM8HIejVsU3cf9i//WB1DL4nCJ6PgSKJ:";
// tests/unit/vectors/tls_psk_vectors.py computes it (lab key, host below, subsystem below).
const char* tls_host = "nqn.2014-08.org.nvmexpress:uuid:6e766d66-6c61-4200-8000-000000000001";
const char* tls_nqn = "nqn.2024-01.io.ferry:tls";
const uint8_t tls_psk[32] = {0x2e, 0xaf, 0x65, 0x71, 0x59, 0xa6, 0x95, 0x86, 0x81, 0xbf, 0xb0,
                             0xc7, 0x93, 0x32, 0x2b, 0xd5, 0x1a, 0x75, 0x60, 0xf0, 0x82, 0x01,
                             0xc8, 0x55, 0x78, 0x18, 0x21, 0x8c, 0x7e, 0xfc, 0xf5, 0x10};

struct tls_world {
    target::target tgt;
    env::dma_pool pool{8u << 20};
    transport::buffer_arbiter buffers{pool};
    SSL_CTX* client_ctx = nullptr;
    tls_world() : tgt(make_config()) {
        const char* level = std::getenv("FERRY_FUZZ_LOG");
        spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::off);
        client_ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(client_ctx, TLS1_3_VERSION);
        SSL_CTX_set_ciphersuites(client_ctx, "TLS_AES_128_GCM_SHA256");
        SSL_CTX_set_psk_use_session_callback(client_ctx, use_session);
    }
    static target::target_config make_config() {
        auto cfg = fuzz::world::make_config();
        target::subsystem_config s = cfg.subsystems.front();
        s.nqn = tls_nqn;
        s.allow_any_host = false;
        s.hosts = {tls_host};
        s.keys[tls_host].tls_psk = lab_key;
        cfg.subsystems.push_back(s);
        return cfg;
    }
    static int use_session(SSL* s, const EVP_MD*, const unsigned char** id, size_t* idlen, SSL_SESSION** sess) {
        static const std::string identity = std::string("NVMe0R01 ") + tls_host + " " + tls_nqn;
        const unsigned char suite[2] = {0x13, 0x01};
        SSL_SESSION* ss = SSL_SESSION_new();
        SSL_SESSION_set1_master_key(ss, tls_psk, sizeof tls_psk);
        SSL_SESSION_set_cipher(ss, SSL_CIPHER_find(s, suite));
        SSL_SESSION_set_protocol_version(ss, TLS1_3_VERSION);
        *id = reinterpret_cast<const unsigned char*>(identity.data());
        *idlen = identity.size();
        *sess = ss;
        return 1;
    }
};

// A server connection on a TLS-required listener over a socketpair.
struct tls_conn {
    int fds[2] = {-1, -1};
    std::unique_ptr<transport::connection> conn;
    explicit tls_conn(tls_world& w) {
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) return;
        transport::connection_info info;
        info.id = 1;
        info.peer = "fuzz";
        info.local_addr = "127.0.0.1";
        info.listener_tls = transport::tls_mode::required;
        conn = std::make_unique<transport::connection>(fds[1], info, w.buffers, w.tgt, env::now_ns());
    }
    ~tls_conn() {
        if (conn) conn->close("fuzz input done");
        conn.reset();
        if (fds[0] >= 0) ::close(fds[0]);
    }
    bool alive() const { return conn && !conn->closing(); }
    std::vector<uint8_t> sent;  // what the connection sent, not yet taken
    // Runs the connection as a reactor would, collecting what it sends.
    void pump() {
        if (!conn) return;
        conn->handler()->poll();
        conn->retry_waiting();
        conn->flush();
        uint8_t buf[65536];
        ssize_t n;
        while ((n = ::recv(fds[0], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
            if (sent.size() < (1u << 20)) sent.insert(sent.end(), buf, buf + n);
    }
    void feed(const uint8_t* data, size_t len, size_t split) {
        for (size_t at = 0; at < len && alive();) {
            const size_t n = std::min(split, len - at);
            conn->feed(data + at, n);
            at += n;
            pump();
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static tls_world w;
    fuzz::input in;
    if (!fuzz::parse_input(data, size, in)) return 0;
    tls_conn c(w);
    if (!c.conn) return 0;
    if (!(in.flags & 1)) {
        c.feed(in.stream, in.stream_size, in.split);
        return 0;
    }
    SSL* client = SSL_new(w.client_ctx);
    BIO* to_server = BIO_new(BIO_s_mem());
    BIO* from_server = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(from_server, -1);  // empty = wait for the server, not end of stream
    SSL_set_bio(client, from_server, to_server);
    SSL_set_connect_state(client);
    auto shuttle = [&] {
        uint8_t buf[16384];
        int n;
        while ((n = BIO_read(to_server, buf, sizeof buf)) > 0) c.feed(buf, size_t(n), size_t(n));
        c.pump();
        if (!c.sent.empty()) BIO_write(from_server, c.sent.data(), int(c.sent.size()));
        c.sent.clear();
    };
    for (int i = 0; i < 8 && SSL_do_handshake(client) != 1 && c.alive(); ++i) shuttle();
    shuttle();
    ERR_clear_error();
    if (SSL_is_init_finished(client) && c.alive()) {
        std::vector<uint8_t> stream;
        if (in.flags & 2) fuzz::append_ic_req(stream, in.header_digest(), in.data_digest());
        stream.insert(stream.end(), in.stream, in.stream + in.stream_size);
        if (in.flags & 16) {
            c.feed(stream.data(), stream.size(), in.split);
        } else {
            for (size_t at = 0; at < stream.size() && c.alive();) {
                const size_t n = std::min(in.split, stream.size() - at);
                SSL_write(client, stream.data() + at, int(n));
                at += n;
                shuttle();
            }
        }
    }
    SSL_free(client);
    ERR_clear_error();
    return 0;
}
