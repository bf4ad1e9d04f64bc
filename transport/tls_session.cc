#include "transport/tls_session.hh"

#include <openssl/err.h>

#include <cstring>
#include <stdexcept>

#include "transport/connection.hh"
#include "transport/tls_psk.hh"

namespace ferry::transport {

namespace {

int session_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

// TLS 1.3 server: the host's PSK identity names (hostnqn, subnqn); the target's configured
// PSK for that pair gives the TLS PSK, and OpenSSL checks the binder with it (a wrong PSK
// fails there). Returning 0 aborts the handshake; psk_failure says why.
int find_psk_session(SSL* ssl, const unsigned char* identity, size_t identity_len, SSL_SESSION** sess) {
    *sess = nullptr;
    auto* self = static_cast<tls_session*>(SSL_get_ex_data(ssl, session_index()));
    auto* factory = static_cast<handler_factory*>(SSL_get_app_data(ssl));
    if (!self || !factory) return 0;
    std::string_view text(reinterpret_cast<const char*>(identity), identity_len);
    psk_identity id;
    try {
        id = parse_psk_identity(text);
    } catch (const std::invalid_argument& e) {
        self->psk_failure = std::string("unknown identity: ") + e.what();
        return 0;
    }
    self->id_hostnqn = id.hostnqn;
    self->id_subnqn = id.subnqn;
    std::optional<configured_psk> configured;
    try {
        configured = factory->find_tls_psk(id.hostnqn, id.subnqn);
    } catch (const std::exception& e) {
        self->psk_failure = std::string("the configured PSK is unusable: ") + e.what();
        return 0;
    }
    if (!configured) {
        self->psk_failure = "no PSK configured for this (host, subsystem)";
        return 0;
    }
    derived_tls_psk psk;
    try {
        // Version 0 identities do not say which HKDF label encoding the host used; Linux
        // hosts with nvme-cli 2.13 (libnvme <= 1.15) use libnvme's original one.
        psk = derive_tls_psk_for(*configured, id, text, hkdf_label_form::libnvme_compat);
    } catch (const std::exception& e) {
        self->psk_failure = e.what();
        return 0;
    }
    const unsigned char suite[2] = {0x13, uint8_t(self->suite_sha384 ? 0x02 : 0x01)};
    const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, suite);
    SSL_SESSION* s = SSL_SESSION_new();
    if (!cipher || !s || !SSL_SESSION_set1_master_key(s, psk.key.data(), psk.key.size()) ||
        !SSL_SESSION_set_cipher(s, cipher) || !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
        SSL_SESSION_free(s);
        self->psk_failure = "OpenSSL could not build the PSK session";
        return 0;
    }
    *sess = s;
    return 1;
}

// Before OpenSSL picks the cipher suite: the suite's hash must be the one the host computed
// its PSK binder with, else OpenSSL drops the PSK (or fails on the binder's length). For
// OpenSSL and GnuTLS >= 3.8.11 hosts that is the identity's hash (NVMe<v>R<hh>). GnuTLS before
// 3.8.11 (tlshd in Debian 13) binds every PSK with HMAC-SHA256 yet offers only
// TLS_AES_256_GCM_SHA384 for a 48-byte PSK: no OpenSSL server can accept that, and the
// failure says so. The binder's length decides; the identity's hash only if it is unreadable.
int pick_suite_by_binder(SSL* ssl, int*, void*) {
    auto* self = static_cast<tls_session*>(SSL_get_ex_data(ssl, session_index()));
    const unsigned char* ext = nullptr;
    size_t len = 0;
    if (!self || SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_psk, &ext, &len) != 1 || len < 4)
        return SSL_CLIENT_HELLO_SUCCESS;  // no PSK offered: the handshake fails later, with a reason
    // PreSharedKeyExtension: identities<7..2^16-1> (identity<1..2^16-1>, uint32 age),
    // binders<33..2^16-1> (binder<32..255>).
    const size_t ids_len = size_t(ext[0]) << 8 | ext[1];
    const size_t first_len = size_t(ext[2]) << 8 | ext[3];
    if (4 + first_len > len || first_len < 8 || 2 + ids_len + 3 > len) return SSL_CLIENT_HELLO_SUCCESS;
    std::string_view first(reinterpret_cast<const char*>(ext + 4), first_len);
    const size_t binder_len = ext[2 + ids_len + 2];
    try {  // the NQNs for the log, should the handshake fail before the PSK lookup
        psk_identity id = parse_psk_identity(first);
        self->id_hostnqn = id.hostnqn;
        self->id_subnqn = id.subnqn;
    } catch (const std::invalid_argument&) {
    }
    if (binder_len == 48 || binder_len == 32) self->suite_sha384 = binder_len == 48;
    if (binder_len == 32 && first.substr(0, 4) == "NVMe" && first.substr(6, 2) == "02")
        self->binder_note =
            "the host bound its SHA-384 PSK with HMAC-SHA256, as tlshd with GnuTLS < 3.8.11 does; "
            "such a host can use a SHA-256 PSK (NVMeTLSkey-1:01) only";
    else if (first.substr(0, 4) == "NVMe")
        self->suite_sha384 = first.substr(6, 2) == "02";
    SSL_set_ciphersuites(ssl, self->suite_sha384 ? "TLS_AES_256_GCM_SHA384" : "TLS_AES_128_GCM_SHA256");
    return SSL_CLIENT_HELLO_SUCCESS;
}

}  // namespace

SSL_CTX* tls_server_ctx() {
    static SSL_CTX* ctx = [] {
        SSL_CTX* c = SSL_CTX_new(TLS_server_method());
        if (!c) throw std::runtime_error("OpenSSL: cannot create the TLS server context");
        SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
        SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
        if (SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384") != 1)
            throw std::runtime_error("OpenSSL: cannot set the TLS 1.3 cipher suites");
        // No resumption of any kind: no tickets, no session cache, no early data.
        SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(c, 0);
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_max_early_data(c, 0);
        SSL_CTX_set_recv_max_early_data(c, 0);
        // Connections in their handshake (e.g. thousands pending) do not keep 2 x 16 KiB record
        // buffers; an established session keeps them (tls_session::read).
        SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_client_hello_cb(c, pick_suite_by_binder, nullptr);
        SSL_CTX_set_psk_find_session_callback(c, find_psk_session);
        return c;
    }();
    return ctx;
}

tls_session::tls_session(handler_factory& factory) {
    _ssl = SSL_new(tls_server_ctx());
    _in = BIO_new(BIO_s_mem());
    _out = BIO_new(BIO_s_mem());
    if (!_ssl || !_in || !_out) {
        BIO_free(_in);
        BIO_free(_out);
        SSL_free(_ssl);
        throw std::runtime_error("OpenSSL: cannot create a TLS session");
    }
    // An empty input BIO means "wait for more", not end of file.
    BIO_set_mem_eof_return(_in, -1);
    SSL_set_bio(_ssl, _in, _out);  // the SSL owns both now
    SSL_set_accept_state(_ssl);
    SSL_set_app_data(_ssl, &factory);
    SSL_set_ex_data(_ssl, session_index(), this);
}

tls_session::~tls_session() {
    SSL_free(_ssl);
}

bool tls_session::put(const uint8_t* data, size_t len) {
    size_t written = 0;
    return BIO_write_ex(_in, data, len, &written) == 1 && written == len;
}

tls_session::status tls_session::fail(int ret, const char* stage) {
    int e = SSL_get_error(_ssl, ret);
    unsigned long err = ERR_peek_error();
    std::string why;
    if (!psk_failure.empty()) {
        why = psk_failure;
    } else if (ERR_GET_REASON(err) == SSL_R_BINDER_DOES_NOT_VERIFY) {
        why = "PSK binder does not verify (the host uses another PSK)";
    } else if (err) {
        const char* r = ERR_reason_error_string(err);
        why = r ? r : "OpenSSL error " + std::to_string(err);
        if (ERR_GET_REASON(err) == SSL_R_NO_SHARED_CIPHER || ERR_GET_REASON(err) == SSL_R_UNSUPPORTED_PROTOCOL)
            why += " (TLS 1.3 with TLS_AES_128_GCM_SHA256 or TLS_AES_256_GCM_SHA384 and a PSK only)";
        else if (!_established && ERR_GET_REASON(err) == SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM)
            why += " (the host offered no PSK identity)";
    } else if (e == SSL_ERROR_SYSCALL) {
        why = "unexpected end of the TLS stream";
    } else {
        why = "SSL error " + std::to_string(e);
    }
    ERR_clear_error();
    if (!_established && !binder_note.empty()) why += " (" + binder_note + ")";
    _error = std::string(stage) + ": " + why;
    return status::failed;
}

tls_session::status tls_session::read(uint8_t* buf, size_t cap, size_t& got) {
    got = 0;
    if (!_established) {
        ERR_clear_error();
        int r = SSL_do_handshake(_ssl);
        if (r != 1) {
            int e = SSL_get_error(_ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return status::want_more;
            return fail(r, "TLS handshake failed");
        }
        _established = true;
        // Released buffers are freed after every record read or written and allocated again
        // for the next: a malloc and free per record on the I/O path. The connection holds
        // ~300 KiB of its own once established; 2 x 16 KiB more is the cheaper price.
        SSL_clear_mode(_ssl, SSL_MODE_RELEASE_BUFFERS);
    }
    ERR_clear_error();
    int r = SSL_read_ex(_ssl, buf, cap, &got);
    if (r == 1) return status::ok;
    int e = SSL_get_error(_ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return status::want_more;
    if (e == SSL_ERROR_ZERO_RETURN) return status::closed;
    return fail(r, "TLS record layer failed");
}

bool tls_session::write(const void* data, size_t len) {
    size_t done = 0;
    ERR_clear_error();
    if (SSL_write_ex(_ssl, data, len, &done) == 1 && done == len) return true;
    fail(0, "TLS encryption failed");
    return false;
}

void tls_session::shutdown() {
    if (_established) SSL_shutdown(_ssl);
    ERR_clear_error();
}

size_t tls_session::out_pending() const {
    return BIO_ctrl_pending(_out);
}

size_t tls_session::take_out(uint8_t* buf, size_t cap) {
    size_t n = 0;
    if (BIO_ctrl_pending(_out) == 0 || BIO_read_ex(_out, buf, cap, &n) != 1) return 0;
    return n;
}

const char* tls_session::cipher_name() const {
    const SSL_CIPHER* c = SSL_get_current_cipher(_ssl);
    return c ? SSL_CIPHER_standard_name(c) : "none";
}

}  // namespace ferry::transport
