#include "transport/connection.hh"

#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "transport/connection_inline.hh"
#include "transport/tls_session.hh"

namespace ferry::transport {
namespace {
constexpr size_t rx_buffer_bytes = 32 << 10;
}  // namespace

connection::connection(int fd, connection_info info, buffer_arbiter& buffers, handler_factory& factory, uint64_t now_ns)
    : _fd(fd),
      _info(std::move(info)),
      _factory(factory),
      _wire(_info.listener_tls == tls_mode::none ? wire_mode::plain : wire_mode::undecided),
      _buffers(buffers),
      _pool(buffers.pool()),
      _created_ns(now_ns),
      _rx_buf(rx_buffer_bytes),
      _cids_outstanding(65536 / 64) {
    _tx.resize(64);
    _tx_iov.resize(IOV_MAX);
    add_requests(1);  // enough for the Connect command
    _handler = factory.make_handler(*this);
}

connection::~connection() {
    _handler.reset();
    _closing = true;
    drop_waiting_and_r2t();                     // nothing of ours may stay in the reactor's FIFO
    if (_info.ticket) _info.ticket->release();  // before the socket closes: admission may shut it down
    for (auto& r : _requests) {
        if (r->chunk_count) put_chunks(*r);
        if (r->reserved_chunk.iov_base) {
            _pool.put(&r->reserved_chunk, 1);
            --_buffers._reserved;
        }
    }
    if (_fd >= 0) ::close(_fd);
}

bool connection::configure_queue(uint16_t qid, uint16_t depth, bool sq_flow_disabled, bool c2h_success) {
    // One spare slot: a response still being written may hold a slot the host already reused.
    const unsigned want = depth + 1u;
    if (_requests.size() < want) {
        const size_t need = want - _requests.size();
        if (_pool.free_chunks() < need) return false;
        add_requests(static_cast<unsigned>(need));
    }
    // Sized once here (the Connect path, not per command): every request's entries fit.
    if (_tx.size() < tx_ring_entries(_requests.size())) resize_tx(tx_ring_entries(_requests.size()));
    _qid = qid;
    _depth = depth;
    _sqhd %= depth;  // the Connect (and anything refused before it) counted until now
    _sq_flow_disabled = sq_flow_disabled;
    _c2h_success = c2h_success;
    if (!_configured && !_auth_pending && _info.ticket) _info.ticket->connected();
    _configured = true;
    return true;
}

void connection::set_auth_pending(bool pending) {
    if (_auth_pending && !pending && _configured && _info.ticket) _info.ticket->connected();
    _auth_pending = pending;
}

bool connection::reapable() const {
    return _closing && engine_ops_in_flight() == 0 && (!_handler || _handler->in_flight() == 0);
}

void connection::close(const std::string& reason) {
    if (_closing) return;
    _closing = true;
    // A shed connection is counted in admission's rate-limited summary: a flood of them must not
    // write one info line each.
    spdlog::log(reason == shed_reason ? spdlog::level::debug : spdlog::level::info, "conn {} ({}{}): closing: {}",
                _info.id, _info.peer, _qid ? ", qid " + std::to_string(_qid) : "", reason);
    if (_tls) {
        // What is queued (a Disconnect's response, a C2HTermReq) is sealed before close_notify:
        // after SSL_shutdown no record can be written.
        tls_seal_queued();
        _tls->shutdown();  // close_notify (or the alert of a failed handshake)
    }
    if (!_send_in_flight) flush();  // best effort: a queued C2HTermReq should reach the host
    ::shutdown(_fd, SHUT_RDWR);
    drop_waiting_and_r2t();
    if (_handler) _handler->on_close();
}

void connection::on_timer(uint64_t now_ns) {
    if (_closing) return;
    if (_info.ticket && _info.ticket->shed()) {
        close(shed_reason);
        return;
    }
    check_r2t_timeout(now_ns);
    if (_closing) return;
    if (!_configured && now_ns > _created_ns + icreq_timeout_ns) {  // now_ns may be a pass clock, older
        close(_ic_done ? "no Connect within 10 s" : "no ICReq within 10 s");
        return;
    }
    _handler->on_timer(now_ns);
}

void connection::respond_now(request& req, uint16_t status) {
    req.status = status;
    req.result0 = req.result1 = 0;
    spdlog::warn("conn {} ({}, qid {}): cid {} opcode {:#04x}: {}", _info.id, _info.peer, _qid, +req.cmd.cid,
                 +req.cmd.opcode, nvme::status_name(status));
    complete(req);
}

// ---------------------------------------------------------------- transmit

const uint8_t* zero_bytes() {
    static const uint8_t* const region = [] {
        void* p = ::mmap(nullptr, max_transfer_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED)
            throw std::runtime_error(std::string("cannot map the zero region for reads: ") + std::strerror(errno));
        std::memset(p, 0, max_transfer_bytes);         // written: real pages, not the kernel's zero page
        ::mprotect(p, max_transfer_bytes, PROT_READ);  // nothing may change them (failing leaves them writable)
        return static_cast<const uint8_t*>(p);
    }();
    return region;
}

void connection::drop(request& req) {
    forget_cid(req);
    if (req.tx_refs == 0)
        release(req);
    else
        req.state = request_state::responding;  // released when the transmit lets go of it
}

void connection::complete(request& req) {
    if (_closing) return drop(req);  // nothing more is sent
    forget_cid(req);  // the host may reuse the CID once it sees this response
    req.state = request_state::responding;
    const size_t hd = _digests.header ? 4 : 0;
    const bool ok = (req.status & 0x7FF) == nvme::sc::success;
    if (ok && req.dir == nvme::data_direction::ctrl_to_host && req.data_len > 0) {
        const bool skip_resp = _c2h_success && req.result0 == 0 && req.result1 == 0;
        const size_t dd = _digests.data ? 4 : 0;
        data_pdu c2h{};
        uint8_t flags = pdu_flag::last_pdu | (skip_resp ? pdu_flag::success : 0);
        if (hd) flags |= pdu_flag::hdgst;
        if (dd) flags |= pdu_flag::ddgst;
        fill_header(c2h.ch, pdu_type::c2h_data, flags, sizeof(data_pdu), static_cast<uint8_t>(sizeof(data_pdu) + hd),
                    static_cast<uint32_t>(sizeof(data_pdu) + hd + req.data_len + dd));
        c2h.cccid = req.cmd.cid;
        c2h.offset = 0;
        c2h.length = req.data_len;
        std::memcpy(req.c2h_pdu.data(), &c2h, sizeof(c2h));
        if (hd) put_hdgst(req.c2h_pdu.data(), sizeof(data_pdu));
        push_tx(req.c2h_pdu.data(), sizeof(data_pdu) + hd, &req);
        // The data: the request's chunks, or zeroes as one entry (zero_bytes() holds a whole transfer).
        const iovec zeroes{const_cast<uint8_t*>(req.zero_data ? zero_bytes() : nullptr), req.data_len};
        const std::span<const iovec> data = req.zero_data ? std::span<const iovec>(&zeroes, 1) : req.data();
        if (req.zero_data)
            push_tx(zeroes.iov_base, zeroes.iov_len, &req);
        else
            push_tx_data(req);
        if (dd) {
            req.c2h_ddgst = iov_crc(data, 0, req.data_len);
            push_tx(&req.c2h_ddgst, 4, &req);
        }
        if (skip_resp) return;
    }
    capsule_resp_pdu resp{};
    fill_header(resp.ch, pdu_type::capsule_resp, hd ? pdu_flag::hdgst : 0, sizeof(resp), 0,
                static_cast<uint32_t>(sizeof(resp) + hd));
    resp.cpl.dw0 = req.result0;
    resp.cpl.dw1 = req.result1;
    resp.cpl.sqhd = _sq_flow_disabled ? 0xFFFF : _sqhd;
    resp.cpl.sqid = _qid;
    resp.cpl.cid = req.cmd.cid;
    resp.cpl.status = nvme::cqe_status(req.status);
    std::memcpy(req.resp_pdu.data(), &resp, sizeof(resp));
    if (hd) put_hdgst(req.resp_pdu.data(), sizeof(resp));
    push_tx(req.resp_pdu.data(), sizeof(resp) + hd, &req);
}

void connection::fatal(uint16_t fes_code, uint32_t fei, const std::string& why) {
    spdlog::warn("conn {} ({}, qid {}): protocol error, sending C2HTermReq FES {:#x} FEI {}: {}", _info.id, _info.peer,
                 _qid, fes_code, fei, why);
    common_header ch;
    std::memcpy(&ch, _hdr.data(), sizeof(ch));
    size_t copy = std::min<size_t>({static_cast<size_t>(ch.hlen), term_req_max_error_data, _hdr.size()});
    if (copy < sizeof(common_header)) copy = sizeof(common_header);
    term_req_pdu t{};
    fill_header(t.ch, pdu_type::c2h_term_req, 0, sizeof(t), 0, static_cast<uint32_t>(sizeof(t) + copy));
    t.fes = fes_code;
    t.fei = fei;
    std::memcpy(_term.data(), &t, sizeof(t));
    std::memcpy(_term.data() + sizeof(t), _hdr.data(), copy);
    push_tx(_term.data(), sizeof(t) + copy, nullptr);
    close("protocol error: " + why);
}

}  // namespace ferry::transport
