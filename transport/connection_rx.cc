// Receiving: socket reads (posix engine), the PDU decoder's state machine (header, pad,
// data, digest), ICReq, command capsules, H2CData, H2CTermReq; and the request data
// copies (kept with the decoder, whose per-PDU copy_in they inline into).
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "transport/connection_inline.hh"

namespace ferry::transport {

namespace {
constexpr size_t direct_read_threshold = 4096;  // payload left at which we read straight into buffers
}  // namespace

size_t request::copy_out(void* dst, size_t len, size_t offset) const {
    auto* d = static_cast<uint8_t*>(dst);
    return for_each_piece(data(), offset, len,
                          [&](const uint8_t* p, size_t n, size_t at) { std::memcpy(d + at, p, n); });
}

size_t request::copy_in(const void* src, size_t len, size_t offset) {
    auto* s = static_cast<const uint8_t*>(src);
    return for_each_piece(data(), offset, len, [&](uint8_t* p, size_t n, size_t at) { std::memcpy(p, s + at, n); });
}

bool connection::on_readable() {
    if (_closing) return false;
    bool progress = false;
    for (int round = 0; round < 16 && !_closing; ++round) {
        ssize_t n;
        if (_wire == wire_mode::plain && _rx == rx_state::data && _rx_left >= direct_read_threshold) {
            // Large payload: read straight into the request's buffer (up to one H2CData PDU's
            // chunks, +1 for a PDU not aligned to them), the rest into _rx_buf (still this
            // PDU's payload if the list was cut short: process_rx copies it).
            std::array<iovec, inline_chunks + 2> v;
            size_t cnt = rx_target_space(v.data(), v.size() - 1);
            size_t space = 0;
            for (size_t i = 0; i < cnt; ++i) space += v[i].iov_len;
            v[cnt++] = {_rx_buf.data(), _rx_buf.size()};
            n = ::readv(_fd, v.data(), static_cast<int>(cnt));
            if (n > 0) {
                size_t to_data = std::min<size_t>(n, space);
                _rx_offset += to_data;
                _rx_left -= to_data;
                if (_rx_left == 0) {
                    if (_cur.has_ddgst)
                        _rx = rx_state::ddgst;
                    else if (!finish_data())
                        return true;
                }
                const uint8_t* p = _rx_buf.data();
                if (!process_rx(p, p + (n - to_data))) return true;
                progress = true;
                continue;
            }
        } else {
            n = ::recv(_fd, _rx_buf.data(), _rx_buf.size(), MSG_DONTWAIT);
            if (n > 0) {
                if (!on_wire(_rx_buf.data(), static_cast<size_t>(n))) return true;
                progress = true;
                if (static_cast<size_t>(n) < _rx_buf.size()) break;
                continue;
            }
        }
        if (n == 0) {
            close(_info.ticket && _info.ticket->shed() ? shed_reason : "host closed the connection");
            return true;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        close(std::string("receive failed: ") + std::strerror(errno));
        return true;
    }
    return progress;
}

bool connection::feed(const uint8_t* data, size_t len) {
    if (len == 0) return !_closing;
    return on_wire(data, len) && !_closing;
}

size_t connection::rx_target_space(iovec* out, size_t max) const {
    size_t cnt = 0;
    for_each_piece(_rx_req->data(), _rx_offset, _rx_left, [&](uint8_t* p, size_t n, size_t) {
        if (cnt < max) out[cnt++] = {p, n};
    });
    return cnt;
}

bool connection::process_rx(const uint8_t*& p, const uint8_t* end) {
    while (p < end) {
        if (_closing) return false;
        switch (_rx) {
            case rx_state::header: {
                size_t target = _hdr_have < sizeof(common_header) ? sizeof(common_header) : _cur.header_bytes;
                size_t n = std::min<size_t>(target - _hdr_have, end - p);
                std::memcpy(_hdr.data() + _hdr_have, p, n);
                _hdr_have += n;
                p += n;
                if (_hdr_have == sizeof(common_header) && target == sizeof(common_header)) {
                    common_header ch;
                    std::memcpy(&ch, _hdr.data(), sizeof(ch));
                    _cur = check_h2c_header(ch, _ic_done, _digests);
                    if (_cur.fes && ch.type == pdu_type::h2c_term_req) {
                        // The host is already terminating: close, never answer with a C2HTermReq.
                        spdlog::warn(
                            "conn {} ({}, qid {}): host sent H2CTermReq with an invalid header (hlen {} pdo {} plen "
                            "{})",
                            _info.id, _info.peer, _qid, +ch.hlen, +ch.pdo, +ch.plen);
                        close("host sent H2CTermReq (invalid header)");
                        return false;
                    }
                    if (_cur.fes) {
                        // Only the 8 bytes of the common header arrived: the C2HTermReq's copy of
                        // the header carries zeroes after them, not the previous PDU's bytes.
                        std::fill(_hdr.begin() + sizeof(common_header), _hdr.end(), uint8_t{0});
                        fatal(_cur.fes, _cur.fei,
                              fmt::format("bad PDU header (type {:#x} flags {:#x} hlen {} pdo {} plen {})", +ch.type,
                                          +ch.flags, +ch.hlen, +ch.pdo, +ch.plen));
                        return false;
                    }
                }
                if (_hdr_have >= sizeof(common_header) && _hdr_have == _cur.header_bytes) {
                    _hdr_have = 0;
                    if (!handle_header()) return false;
                }
                break;
            }
            case rx_state::pad: {
                size_t n = std::min<size_t>(_skip, end - p);
                p += n;
                _skip -= n;
                if (_skip == 0) _rx = rx_state::data;
                break;
            }
            case rx_state::data: {
                size_t n = std::min<size_t>(_rx_left, end - p);
                _rx_req->copy_in(p, n, _rx_offset);
                p += n;
                _rx_offset += n;
                _rx_left -= n;
                if (_rx_left == 0) {
                    if (_cur.has_ddgst)
                        _rx = rx_state::ddgst;
                    else if (!finish_data())
                        return false;
                }
                break;
            }
            case rx_state::ddgst: {
                size_t n = std::min<size_t>(4 - _ddgst_have, end - p);
                std::memcpy(_ddgst.data() + _ddgst_have, p, n);
                _ddgst_have += n;
                p += n;
                if (_ddgst_have == 4) {
                    _ddgst_have = 0;
                    uint32_t got;
                    std::memcpy(&got, _ddgst.data(), 4);
                    uint32_t want = iov_crc(_rx_req->data(), _rx_pdu_start, _rx_offset - _rx_pdu_start);
                    if (got != want) {
                        spdlog::warn(
                            "conn {} ({}, qid {}): data digest error on cid {} (got {:#010x}, computed {:#010x})",
                            _info.id, _info.peer, _qid, +_rx_req->cmd.cid, got, want);
                        _rx_req->data_digest_error = true;
                    }
                    if (!finish_data()) return false;
                }
                break;
            }
            case rx_state::term_data: {
                size_t n = std::min<size_t>(_skip, end - p);
                p += n;
                _skip -= n;
                if (_skip == 0) {
                    close("host sent H2CTermReq");
                    return false;
                }
                break;
            }
        }
    }
    return !_closing;
}

bool connection::handle_header() {
    common_header ch;
    std::memcpy(&ch, _hdr.data(), sizeof(ch));
    if (_ic_done && _digests.header && ch.type != pdu_type::h2c_term_req) {
        uint32_t got;
        std::memcpy(&got, _hdr.data() + ch.hlen, 4);
        if (got != crc32c(_hdr.data(), ch.hlen)) {
            fatal(fes::header_digest, 0, fmt::format("header digest error on PDU type {:#x}", ch.type));
            return false;
        }
    }
    switch (ch.type) {
        case pdu_type::ic_req:
            return handle_ic_req();
        case pdu_type::capsule_cmd:
            return handle_capsule();
        case pdu_type::h2c_data:
            return handle_h2c_data();
        case pdu_type::h2c_term_req:
            handle_term_req();
            return !_closing;
    }
    return false;  // unreachable: check_h2c_header admits only the types above
}

bool connection::handle_ic_req() {
    ic_req_pdu req;
    std::memcpy(&req, _hdr.data(), sizeof(req));
    if (req.pfv != 0) {
        fatal(fes::unsupported_parameter, offsetof(ic_req_pdu, pfv), fmt::format("ICReq PFV {} unsupported", +req.pfv));
        return false;
    }
    if (req.hpda != 0) {
        // Linux hosts send HPDA 0; padding C2H data for other values is not implemented.
        fatal(fes::unsupported_parameter, offsetof(ic_req_pdu, hpda),
              fmt::format("ICReq HPDA {} unsupported (only 0)", req.hpda));
        return false;
    }
    if (req.digest & ~3u) {
        fatal(fes::invalid_header_field, offsetof(ic_req_pdu, digest), "ICReq reserved digest bits set");
        return false;
    }
    _digests.header = req.digest & 1;
    _digests.data = req.digest & 2;
    _ic_done = true;

    ic_resp_pdu resp{};
    fill_header(resp.ch, pdu_type::ic_resp, 0, sizeof(resp), 0, sizeof(resp));
    resp.pfv = 0;
    resp.cpda = 0;
    resp.digest = req.digest;
    resp.maxh2cdata = maxh2cdata_bytes;
    std::memcpy(_ic_resp.data(), &resp, sizeof(resp));
    push_tx(_ic_resp.data(), sizeof(resp), nullptr);
    spdlog::debug("conn {} ({}): ICReq accepted (header digest {}, data digest {}, maxr2t {})", _info.id, _info.peer,
                  _digests.header, _digests.data, +req.maxr2t);
    return true;
}

bool connection::handle_capsule() {
    request* req = alloc_request();
    if (!req) {
        fatal(fes::sequence_error, 0,
              fmt::format("host exceeded the queue depth ({} commands outstanding)", _requests.size()));
        return false;
    }
    std::memcpy(&req->cmd, _hdr.data() + sizeof(common_header), sizeof(nvme::sqe));
    req->status = 0;
    req->result0 = req->result1 = 0;
    req->h2c_received = 0;
    req->data_digest_error = false;
    req->zero_data = false;
    req->data_len = 0;
    req->iov_count = 0;
    req->chunk_count = 0;
    req->state = request_state::executing;
    // The head wraps at the queue size (not a counter reduced modulo it when sent, which jumps
    // when the counter wraps and the size is not a power of two).
    if (++_sqhd == _depth) _sqhd = 0;

    const nvme::sqe& cmd = req->cmd;
    // A CID still outstanding on this queue: answered with Command ID Conflict (after any
    // in-capsule data), never executed; the original command is unaffected.
    uint64_t& cid_word = _cids_outstanding[cmd.cid / 64];
    const uint64_t cid_bit = uint64_t(1) << (cmd.cid % 64);
    // A CID in use whose command the handler gives up (dropped, its bit cleared): the new one runs.
    if (cid_word & cid_bit) _handler->abandon(cmd.cid);
    req->cid_tracked = !(cid_word & cid_bit);
    if (req->cid_tracked)
        cid_word |= cid_bit;
    else
        req->status = nvme::sc::cid_conflict;
    // Data by SGL only (NVMe over Fabrics): any other PSDT makes the SGL meaningless, so the command
    // is refused before its SGL is read or it is parsed, as nvmet does (Connect included).
    if (req->status == 0 && (req->cmd.flags & nvme::psdt_mask) != nvme::psdt_sgl_contiguous) [[unlikely]]
        req->status = nvme::sc::invalid_field | nvme::status_dnr;
    const bool fabrics = cmd.opcode == nvme::admin_opc::fabrics;
    req->dir = nvme::direction_of(fabrics ? reinterpret_cast<const nvme::fabrics_sqe&>(cmd).fctype : cmd.opcode);
    const uint32_t len = cmd.sgl.length;
    const uint8_t sgl_type = cmd.sgl.type;

    if (_cur.data_bytes > 0) {
        if (_cur.data_bytes > in_capsule_bytes) {
            fatal(fes::data_limit_exceeded, 0,
                  fmt::format("cid {}: {} bytes of in-capsule data exceed the {} byte limit", +cmd.cid, _cur.data_bytes,
                              in_capsule_bytes));
            return false;
        }
        // The data is on the wire and must be consumed; errors are reported after it.
        // (A CID conflict found above keeps its status.)
        if (req->status == 0) {
            if (sgl_type != nvme::sgl_data_block_offset)
                req->status = nvme::sc::sgl_invalid_type | nvme::status_dnr;
            else if (cmd.sgl.address != 0)
                req->status = nvme::sc::sgl_invalid_offset | nvme::status_dnr;
            else if (len != _cur.data_bytes)
                req->status = nvme::sc::sgl_invalid_data_length | nvme::status_dnr;
            else if (req->dir != nvme::data_direction::host_to_ctrl)
                req->status = nvme::sc::invalid_field | nvme::status_dnr;
        }
        req->data_len = static_cast<uint32_t>(_cur.data_bytes);
        req->iov[0] = {req->reserved_chunk.iov_base, _cur.data_bytes};  // iov is inline_iov here
        req->iov_count = 1;
        _rx_req = req;
        _rx_offset = 0;
        _rx_pdu_start = 0;
        _rx_left = req->data_len;
        _skip = _cur.pad_bytes;
        _rx = _skip ? rx_state::pad : rx_state::data;
        return true;
    }

    if (req->status != 0) {
        respond_now(*req, req->status);
        return !_closing;
    }
    if (len == 0) {
        execute(*req);
        return !_closing;
    }
    if (sgl_type == nvme::sgl_data_block_offset) {
        respond_now(*req, nvme::sc::sgl_invalid_data_length | nvme::status_dnr);  // claims in-capsule data, has none
        return true;
    }
    if (sgl_type != nvme::sgl_transport_data_block) {
        respond_now(*req, nvme::sc::sgl_invalid_type | nvme::status_dnr);
        return true;
    }
    if ((req->dir != nvme::data_direction::host_to_ctrl && req->dir != nvme::data_direction::ctrl_to_host) ||
        len > max_transfer_bytes) {
        // The command is parsed before its data is refused (nvmet): an unknown opcode or
        // namespace says so rather than Invalid Field.
        req->data_len = len;
        if (const uint16_t status = _handler->check(*req)) {
            req->status = status;
            complete(*req);
            return !_closing;
        }
        respond_now(*req, nvme::sc::invalid_field | nvme::status_dnr);
        return true;
    }
    req->data_len = len;
    if (req->dir == nvme::data_direction::host_to_ctrl || len > env::dma_pool::chunk_size) {
        if (const uint16_t status = _handler->check(*req)) {
            req->status = status;  // the handler logged it as it does its own errors
            complete(*req);
            return !_closing;
        }
    }
    request_buffer(*req);
    return !_closing;
}

bool connection::handle_h2c_data() {
    data_pdu h;
    std::memcpy(&h, _hdr.data(), sizeof(h));
    if (h.ttag >= _requests.size() || _requests[h.ttag]->state != request_state::wait_h2c) {
        fatal(fes::invalid_header_field, offsetof(data_pdu, ttag),
              fmt::format("H2CData with unknown TTAG {} (cccid {})", +h.ttag, +h.cccid));
        return false;
    }
    request& req = *_requests[h.ttag];
    if (h.cccid != req.cmd.cid) {
        fatal(fes::invalid_header_field, offsetof(data_pdu, cccid),
              fmt::format("H2CData cccid {} does not match TTAG {} (cid {})", +h.cccid, +h.ttag, +req.cmd.cid));
        return false;
    }
    if (h.length == 0 || h.length != _cur.data_bytes) {
        fatal(
            fes::invalid_header_field, offsetof(data_pdu, length),
            fmt::format("cid {}: H2CData DATAL {} but the PDU carries {} bytes", +h.cccid, +h.length, _cur.data_bytes));
        return false;
    }
    if (h.length > maxh2cdata_bytes) {
        fatal(fes::data_limit_exceeded, 0,
              fmt::format("cid {}: H2CData of {} bytes exceeds MAXH2CDATA {}", +h.cccid, +h.length, maxh2cdata_bytes));
        return false;
    }
    if (h.offset != req.h2c_received || uint64_t(h.offset) + h.length > req.data_len) {
        fatal(fes::data_out_of_range, 0,
              fmt::format("cid {}: H2CData offset {} length {} outside the expected window (next offset {}, total {})",
                          +h.cccid, +h.offset, +h.length, req.h2c_received, req.data_len));
        return false;
    }
    const bool last = h.ch.flags & pdu_flag::last_pdu;
    if (last != (h.offset + h.length == req.data_len)) {
        fatal(fes::invalid_header_field, offsetof(common_header, flags),
              fmt::format("cid {}: H2CData LAST_PDU flag {} at offset {} of {}", +h.cccid, last, h.offset + h.length,
                          req.data_len));
        return false;
    }
    _rx_req = &req;
    _rx_offset = h.offset;
    _rx_pdu_start = h.offset;
    _rx_left = h.length;
    _skip = _cur.pad_bytes;
    _rx = _skip ? rx_state::pad : rx_state::data;
    return true;
}

void connection::handle_term_req() {
    term_req_pdu t;
    std::memcpy(&t, _hdr.data(), sizeof(t));
    spdlog::warn("conn {} ({}): host sent H2CTermReq FES {:#x} FEI {:#x}", _info.id, _info.peer, +t.fes, +t.fei);
    _skip = _cur.data_bytes;
    if (_skip == 0) {
        close("host sent H2CTermReq");
        return;
    }
    _rx = rx_state::term_data;
}

bool connection::finish_data() {
    request& req = *_rx_req;
    _rx = rx_state::header;
    _rx_req = nullptr;
    if (req.state == request_state::wait_h2c) {
        req.h2c_received = _rx_offset;
        if (req.h2c_received < req.data_len) return true;  // more H2CData PDUs follow
        req.state = request_state::executing;
    }
    if (req.data_digest_error)
        respond_now(req, nvme::sc::transient_transport_error);
    else if (req.status)
        respond_now(req, req.status);
    else
        execute(req);
    return !_closing;
}

}  // namespace ferry::transport
