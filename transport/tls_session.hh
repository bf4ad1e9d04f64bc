// One connection's TLS 1.3 server session (PSK only) on OpenSSL memory BIOs.
//
// Why memory BIOs and not Asio's ssl_stream or a socket BIO: the reactor owns the
// non-blocking socket and reads it with its own engines (posix recv/readv, io_uring), so
// OpenSSL must never touch the fd. The connection hands received ciphertext in (`put`),
// pulls plaintext out (`read`), encrypts its transmit batch (`write`) and sends what
// `pending_out` holds itself. No thread, no blocking, same poll loop as plain TCP.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <string>

#include "transport/tls.hh"

namespace ferry::transport {

class handler_factory;

// Process-wide server context: TLS 1.3 only, TLS_AES_128_GCM_SHA256 and
// TLS_AES_256_GCM_SHA384, PSK via the find-session callback, no tickets, no resumption,
// no early data, no certificates.
SSL_CTX* tls_server_ctx();

class tls_session {
public:
    // Ciphertext not yet sent is kept below this (plus one batch, 16 KiB): the connection
    // stops encrypting its transmit queue until the socket takes it.
    static constexpr size_t max_out_backlog = 256 * 1024;

    explicit tls_session(handler_factory& factory);
    ~tls_session();
    tls_session(const tls_session&) = delete;
    tls_session& operator=(const tls_session&) = delete;

    // Received ciphertext. Returns false if the memory BIO refused it.
    bool put(const uint8_t* data, size_t len);
    enum class status : uint8_t { ok, want_more, closed, failed };
    // Advances the handshake, then decrypts into `buf`; `got` = plaintext bytes.
    // failed: error() says why (handshake or record layer); closed: the peer sent close_notify.
    status read(uint8_t* buf, size_t cap, size_t& got);
    // Encrypts `len` plaintext bytes (all or failure).
    bool write(const void* data, size_t len);
    // Queues a close_notify.
    void shutdown();

    // Ciphertext waiting to be sent; take_out moves up to `cap` bytes of it into `buf`.
    size_t out_pending() const;
    size_t take_out(uint8_t* buf, size_t cap);

    bool established() const { return _established; }
    const std::string& error() const { return _error; }
    const char* cipher_name() const;
    // Set by the find-session callback: the identity's NQNs and how it failed, if it did.
    std::string id_hostnqn, id_subnqn, psk_failure;
    // The suite's hash, chosen from the host's PSK binder length (ClientHello callback).
    bool suite_sha384 = false;
    std::string binder_note;  // why a binder/suite mismatch may fail the handshake

private:
    status fail(int ret, const char* stage);

    SSL* _ssl = nullptr;
    BIO* _in = nullptr;
    BIO* _out = nullptr;
    bool _established = false;
    std::string _error;
};

}  // namespace ferry::transport
