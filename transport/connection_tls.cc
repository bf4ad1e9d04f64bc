// TLS on a connection: deciding the wire mode by the first byte, decrypting into the PDU
// decoder, encrypting the transmit ring into the ciphertext buffer (flush_tls sends it:
// tx_ring.cc).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "transport/connection_inline.hh"
#include "transport/tls_session.hh"

namespace ferry::transport {

bool connection::on_wire(const uint8_t* p, size_t n) {
    if (_closing) return false;
    if (_wire == wire_mode::undecided) {
        // A TLS connection starts with a handshake record (content type 22); a plain one
        // with an ICReq PDU (type 0).
        if (p[0] == 0x16) {
            _wire = wire_mode::tls;
            try {
                _tls = std::make_unique<tls_session>(_factory);
            } catch (const std::exception& e) {
                close(e.what());
                return false;
            }
            // Small until the handshake is done (a PSK ServerHello and Finished fit in 1 KiB): a
            // flood of half-open TLS connections must not cost ~300 KiB each.
            _tls_plain.resize(16 * 1024);
            _tls_out.resize(4 * 1024);
        } else if (_info.listener_tls == tls_mode::required) {
            close(fmt::format("plain connection to a TLS-required listener (first byte {:#04x}, not a TLS handshake)",
                              p[0]));
            return false;
        } else {
            _wire = wire_mode::plain;
        }
    }
    if (_wire == wire_mode::plain) return process_rx(p, p + n);
    if (!_tls->put(p, n)) {
        close("TLS: cannot buffer received data");
        return false;
    }
    return tls_receive();
}

// Decrypts all the input BIO holds (it never keeps more than one receive's worth plus one
// partial record) and hands the plaintext to the PDU decoder.
bool connection::tls_receive() {
    for (;;) {
        const bool was_established = _tls->established();
        size_t got = 0;
        auto st = _tls->read(_tls_plain.data(), _tls_plain.size(), got);
        if (!was_established && _tls->established()) {
            _info.tls = true;
            _info.tls_hostnqn = _tls->id_hostnqn;
            _info.tls_subnqn = _tls->id_subnqn;
            spdlog::info("conn {} ({}): TLS 1.3 {} identity {} {}", _info.id, _info.peer, _tls->cipher_name(),
                         _info.tls_hostnqn, _info.tls_subnqn);
        }
        switch (st) {
            case tls_session::status::ok: {
                const uint8_t* q = _tls_plain.data();
                if (!process_rx(q, q + got)) return false;
                break;
            }
            case tls_session::status::want_more:
                return !_closing;
            case tls_session::status::closed:
                close("host sent TLS close_notify");
                return false;
            case tls_session::status::failed:
                if (!_tls->established())
                    spdlog::warn("conn {} ({}): {} (identity host {}, subsystem {})", _info.id, _info.peer,
                                 _tls->error(), _tls->id_hostnqn.empty() ? "-" : _tls->id_hostnqn,
                                 _tls->id_subnqn.empty() ? "-" : _tls->id_subnqn);
                close(_tls->error());
                return false;
        }
    }
}

// Encrypts the transmit queue in batches of up to 16 KiB (one TLS record each), while the
// ciphertext not yet sent stays under tls_session::max_out_backlog.
void connection::tls_encrypt() {
    if (!_tls->established()) return;
    while (_tx_count > 0 && _tls->out_pending() < tls_session::max_out_backlog) {
        size_t batch = 0;
        while (_tx_count > 0 && batch < _tls_plain.size()) {
            tx_entry& e = _tx[_tx_head];
            size_t n = std::min(e.iov.iov_len, _tls_plain.size() - batch);
            std::memcpy(_tls_plain.data() + batch, e.iov.iov_base, n);
            batch += n;
            sent(n);  // the plaintext is copied: its request may be released
        }
        if (!_tls->write(_tls_plain.data(), batch)) {
            if (!_closing) close(_tls->error());
            return;
        }
    }
}

// At close: encrypts the transmit queue entry by entry, straight from the entries (close runs
// inside the PDU decoder, which may still be reading _tls_plain).
void connection::tls_seal_queued() {
    if (!_tls->established()) return;
    while (_tx_count > 0 && _tls->out_pending() < tls_session::max_out_backlog) {
        const iovec e = _tx[_tx_head].iov;
        if (!_tls->write(e.iov_base, e.iov_len)) return;
        sent(e.iov_len);
    }
}

// Moves pending ciphertext into _tls_out when it is empty; true if there is some to send.
bool connection::tls_fill_out() {
    if (_tls_out_len == 0) {
        // Grown to full size once established, here: nothing is in it and (callers' rule) no
        // send from it is in flight, so moving it is safe.
        if (_tls->established() && _tls_out.size() < tls_session::max_out_backlog)
            _tls_out.resize(tls_session::max_out_backlog + 16 * 1024);
        tls_encrypt();
        _tls_out_off = 0;
        _tls_out_len = _tls->take_out(_tls_out.data(), _tls_out.size());
    }
    return _tls_out_len != 0;
}

}  // namespace ferry::transport
