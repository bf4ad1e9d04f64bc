// The io_uring socket engine's side of a connection: one multishot receive stays armed and
// hands over bytes the kernel put in the reactor's provided buffers; at most one send is in
// flight, out of the transmit ring. The reactor owns the ring and the buffers.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "transport/connection_inline.hh"
#include "transport/tls_session.hh"

namespace ferry::transport {

bool connection::arm_recv() {
    if (_closing || _recv_in_flight) return false;
    _recv_in_flight = 1;
    return true;
}

bool connection::on_received(const uint8_t* p, size_t n) {
    if (_closing) return false;
    on_wire(p, n);
    return true;
}

bool connection::on_recv_ended(int result) {
    _recv_in_flight = 0;
    if (_closing) return false;
    // The kernel ran out of provided buffers before the reactor gave them back (ENOBUFS), or
    // ended the receive after data: armed again next pass, nothing lost (the data stays in
    // the socket).
    if (result > 0 || result == -ENOBUFS || result == -EAGAIN || result == -EINTR) return false;
    if (result == 0)
        close(_info.ticket && _info.ticket->shed() ? shed_reason : "host closed the connection");
    else
        close(std::string("receive failed: ") + std::strerror(-result));
    return true;
}

bool connection::prepare_send(msghdr*& msg) {
    if (_tls) {
        if (_send_in_flight || !tls_fill_out()) return false;
        _tx_iov[0] = {_tls_out.data() + _tls_out_off, _tls_out_len};
        _tx_msg = {};
        _tx_msg.msg_iov = _tx_iov.data();
        _tx_msg.msg_iovlen = 1;
        msg = &_tx_msg;
        _send_in_flight = 1;
        return true;
    }
    if (_send_in_flight || _tx_count == 0) return false;
    size_t total = 0;
    const size_t cnt = gather_tx(total);
    _tx_msg = {};
    _tx_msg.msg_iov = _tx_iov.data();
    _tx_msg.msg_iovlen = cnt;
    msg = &_tx_msg;
    _send_in_flight = 1;
    return true;
}

bool connection::on_send_done(int result) {
    _send_in_flight = 0;
    if (_tls && result >= 0) {
        _tls_out_off += static_cast<size_t>(result);
        _tls_out_len -= static_cast<size_t>(result);
        return result > 0;
    }
    if (_tls) {
        if (result == -EAGAIN || result == -EINTR) return false;
        if (!_closing) close(std::string("send failed: ") + std::strerror(-result));
        _tls_out_len = 0;
        discard_tx();
        return true;
    }
    if (result >= 0) {
        sent(static_cast<size_t>(result));
        return result > 0;
    }
    if (result == -EAGAIN || result == -EINTR) return false;
    if (!_closing) close(std::string("send failed: ") + std::strerror(-result));
    discard_tx();  // nothing more will be sent
    return true;
}

}  // namespace ferry::transport
