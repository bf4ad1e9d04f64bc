// The transmit ring: growing it, gathering it into the sendmsg iovec table (data runs
// expanded), retiring what the socket took, and the posix engine's sends (plain, or TLS
// ciphertext).
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "transport/connection_inline.hh"
#include "transport/tls_session.hh"

namespace ferry::transport {

void connection::resize_tx(size_t entries) {
    std::vector<tx_entry> resized(entries);
    for (size_t i = 0; i < _tx_count; ++i) resized[i] = _tx[(_tx_head + i) % _tx.size()];
    _tx.swap(resized);
    _tx_head = 0;
}

size_t connection::gather_tx(size_t& total_bytes) {
    const size_t max = _tx_iov.size();
    size_t cnt = 0;
    total_bytes = 0;
    for (size_t i = 0; i < _tx_count && cnt < max; ++i) {
        const tx_entry& e = _tx[(_tx_head + i) % _tx.size()];
        _tx_iov[cnt++] = e.iov;
        total_bytes += e.iov.iov_len;
        for (uint16_t k = e.run_next; k < e.run_end && cnt < max; ++k) {
            _tx_iov[cnt++] = e.owner->iov[k];
            total_bytes += e.owner->iov[k].iov_len;
        }
    }
    return cnt;
}

void connection::sent(size_t bytes) {
    while (bytes > 0) {
        tx_entry& e = _tx[_tx_head];
        if (bytes < e.iov.iov_len) {
            e.iov.iov_base = static_cast<uint8_t*>(e.iov.iov_base) + bytes;
            e.iov.iov_len -= bytes;
            return;
        }
        bytes -= e.iov.iov_len;
        if (e.run_next != e.run_end) {  // the data run's next chunk
            e.iov = e.owner->iov[e.run_next++];
            continue;
        }
        request* owner = e.owner;
        _tx_head = (_tx_head + 1) % _tx.size();
        --_tx_count;
        if (owner && --owner->tx_refs == 0 && owner->state == request_state::responding) release(*owner);
    }
}

void connection::discard_tx() {
    while (_tx_count) {
        request* owner = _tx[_tx_head].owner;
        _tx_head = (_tx_head + 1) % _tx.size();
        --_tx_count;
        if (owner && --owner->tx_refs == 0 && owner->state == request_state::responding) release(*owner);
    }
}

bool connection::wants_write() const {
    if (_tls) return _tls_out_len != 0 || _tls->out_pending() != 0 || (_tx_count != 0 && _tls->established());
    return _tx_count != 0;
}

bool connection::flush() {
    if (_tls) return flush_tls();
    bool progress = false;
    while (_tx_count > 0) {
        size_t total = 0;
        const size_t cnt = gather_tx(total);
        msghdr msg{};
        msg.msg_iov = _tx_iov.data();
        msg.msg_iovlen = cnt;
        ssize_t n = ::sendmsg(_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (!_closing) close(std::string("send failed: ") + std::strerror(errno));
            // Nothing more will be sent: drop the queue so requests can be released.
            discard_tx();
            continue;
        }
        sent(static_cast<size_t>(n));
        progress = true;
        if (static_cast<size_t>(n) < total) break;
    }
    return progress;
}

bool connection::flush_tls() {
    bool progress = false;
    while (tls_fill_out()) {
        ssize_t n = ::send(_fd, _tls_out.data() + _tls_out_off, _tls_out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (!_closing) close(std::string("send failed: ") + std::strerror(errno));
            _tls_out_len = 0;  // nothing more will be sent
            discard_tx();
            break;
        }
        _tls_out_off += static_cast<size_t>(n);
        _tls_out_len -= static_cast<size_t>(n);
        progress = true;
        if (_tls_out_len != 0) break;
    }
    return progress;
}

}  // namespace ferry::transport
