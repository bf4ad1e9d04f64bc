// Private to transport/: included only by connection's own files (connection*.cc, tx_ring.cc).
// The helpers they share, and the inline definitions of the connection members that a
// per-command path in another of these files calls (they were inlined there when all of this
// was connection.cc, and stay inlinable).
#pragma once

#include <algorithm>
#include <cstring>
#include <span>

#include "env/thread.hh"
#include "transport/connection.hh"

namespace ferry::transport {

inline constexpr const char* shed_reason =
    "shed: too many connections without ICReq, TLS, Connect and authentication from its address or overall";

inline void put_hdgst(uint8_t* pdu, size_t hlen) {
    uint32_t d = crc32c(pdu, hlen);
    std::memcpy(pdu + hlen, &d, 4);
}

// Calls fn(pointer, bytes) for each piece of the byte range [offset, offset + len) of an
// iovec list; returns the bytes visited (less than len if the list is shorter).
template <typename Fn>
inline size_t for_each_piece(std::span<const iovec> iov, size_t offset, size_t len, Fn&& fn) {
    size_t done = 0;
    for (const iovec& v : iov) {
        if (done == len) break;
        if (offset >= v.iov_len) {
            offset -= v.iov_len;
            continue;
        }
        const size_t n = std::min(v.iov_len - offset, len - done);
        fn(static_cast<uint8_t*>(v.iov_base) + offset, n, done);
        done += n;
        offset = 0;
    }
    return done;
}

// CRC32C over `len` bytes of an iovec list starting at `offset`.
inline uint32_t iov_crc(std::span<const iovec> iov, size_t offset, size_t len) {
    uint32_t s = crc32c_begin();
    for_each_piece(iov, offset, len, [&](const uint8_t* p, size_t n, size_t) { s = crc32c_update(s, p, n); });
    return crc32c_end(s);
}

// ---------------------------------------------------------------- request table

inline request* connection::alloc_request() {
    if (_free_tags.empty()) return nullptr;
    request* r = _requests[_free_tags.back()].get();
    _free_tags.pop_back();
    return r;
}

inline void connection::forget_cid(request& req) {
    if (!req.cid_tracked) return;
    req.cid_tracked = false;
    _cids_outstanding[req.cmd.cid / 64] &= ~(uint64_t(1) << (req.cmd.cid % 64));
}

// ---------------------------------------------------------------- command flow

inline void connection::start_data(request& req) {
    if (req.dir == nvme::data_direction::host_to_ctrl)
        send_r2t(req);
    else
        execute(req);
}

inline void connection::send_r2t(request& req) {
    req.state = request_state::wait_h2c;
    req.r2t_sent_ns = env::pass_now_ns();
    const size_t hd = _digests.header ? 4 : 0;
    data_pdu r2t{};
    fill_header(r2t.ch, pdu_type::r2t, _digests.header ? pdu_flag::hdgst : 0, sizeof(data_pdu), 0,
                static_cast<uint32_t>(sizeof(data_pdu) + hd));
    r2t.cccid = req.cmd.cid;
    r2t.ttag = req.tag;
    r2t.offset = 0;
    r2t.length = req.data_len;
    std::memcpy(req.r2t_pdu.data(), &r2t, sizeof(r2t));
    if (hd) put_hdgst(req.r2t_pdu.data(), sizeof(data_pdu));
    push_tx(req.r2t_pdu.data(), sizeof(data_pdu) + hd, &req);
}

inline void connection::execute(request& req) {
    req.state = request_state::executing;
    _handler->on_command(req);
}

// ---------------------------------------------------------------- transmit ring

inline void connection::push_tx(const void* base, size_t len, request* owner) {
    // Unreachable once configure_queue sized the ring (tx_ring_entries); kept so that a miscount
    // costs memory, not a corrupted stream.
    if (_tx_count == _tx.size()) resize_tx(_tx.size() * 2);
    _tx[(_tx_head + _tx_count) % _tx.size()] = {{const_cast<void*>(base), len}, owner};
    ++_tx_count;
    if (owner) ++owner->tx_refs;
}

inline void connection::push_tx_data(request& req) {
    push_tx(req.iov[0].iov_base, req.iov[0].iov_len, &req);
    tx_entry& e = _tx[(_tx_head + _tx_count - 1) % _tx.size()];
    e.run_next = 1;
    e.run_end = req.iov_count;
}

}  // namespace ferry::transport
