#include "tools/perf/host_queue.hh"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace ferry::perf {
namespace tp = ferry::transport;
namespace {
constexpr size_t hdr_buf = 128;
constexpr int setup_timeout_ms = 10'000;

uint32_t iov_crc(const uint8_t* p, size_t n) { return tp::crc32c(p, n); }
}  // namespace

host_queue::host_queue(const std::string& addr, uint16_t port, bool hdgst, bool ddgst) {
    _dg.header = hdgst;
    _dg.data = ddgst;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0) throw std::runtime_error(fmt::format("{}:{}: {}", addr, port, gai_strerror(rc)));
    std::string err = "no address";
    for (addrinfo* a = res; a; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            _fd = fd;
            break;
        }
        err = std::strerror(errno);
        ::close(fd);
    }
    ::freeaddrinfo(res);
    if (_fd < 0) throw std::runtime_error(fmt::format("connect to {}:{}: {}", addr, port, err));
    int one = 1;
    ::setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    _rx.resize(512 << 10);
    _slots.resize(1);
}

host_queue::~host_queue() {
    if (_fd >= 0) ::close(_fd);
}

uint8_t* host_queue::take_header() {
    while (_hdr_free.empty()) flush(true);
    int i = _hdr_free.back();
    _hdr_free.pop_back();
    return _hdr_mem.data() + size_t(i) * hdr_buf;
}

void host_queue::queue_tx(const void* p, size_t n, int hdr) {
    if (_tx_head > 0 && _tx_head == _tx.size()) {
        _tx.clear();
        _tx_head = 0;
    }
    _tx.push_back({{const_cast<void*>(p), n}, hdr});
}

void host_queue::flush(bool wait) {
    while (_tx_head < _tx.size()) {
        size_t cnt = std::min<size_t>(_tx.size() - _tx_head, 1024);
        _iov_scratch.resize(cnt);
        for (size_t i = 0; i < cnt; ++i) _iov_scratch[i] = _tx[_tx_head + i].iov;
        msghdr m{};
        m.msg_iov = _iov_scratch.data();
        m.msg_iovlen = cnt;
        ssize_t n = ::sendmsg(_fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!wait) return;
                pollfd p{_fd, POLLOUT, 0};
                ::poll(&p, 1, 100);
                continue;
            }
            throw protocol_error(fmt::format("qid {}: send: {}", _qid, std::strerror(errno)));
        }
        size_t left = static_cast<size_t>(n);
        while (left > 0) {
            tx_entry& e = _tx[_tx_head];
            if (left < e.iov.iov_len) {
                e.iov.iov_base = static_cast<uint8_t*>(e.iov.iov_base) + left;
                e.iov.iov_len -= left;
                left = 0;
                break;
            }
            left -= e.iov.iov_len;
            if (e.hdr >= 0) _hdr_free.push_back(e.hdr);
            ++_tx_head;
        }
        if (!wait && _tx_head < _tx.size()) return;
    }
    _tx.clear();
    _tx_head = 0;
}

void host_queue::handshake() {
    tp::ic_req_pdu req{};
    tp::fill_header(req.ch, tp::pdu_type::ic_req, 0, sizeof(req), 0, sizeof(req));
    req.digest = (_dg.header ? 1 : 0) | (_dg.data ? 2 : 0);
    if (::send(_fd, &req, sizeof(req), MSG_NOSIGNAL) != sizeof(req))
        throw protocol_error(std::string("ICReq: send: ") + std::strerror(errno));
    tp::ic_resp_pdu resp{};
    size_t got = 0;
    while (got < sizeof(resp)) {
        pollfd p{_fd, POLLIN, 0};
        if (::poll(&p, 1, setup_timeout_ms) <= 0) throw protocol_error("ICResp: no answer within 10 s");
        ssize_t n = ::recv(_fd, reinterpret_cast<uint8_t*>(&resp) + got, sizeof(resp) - got, 0);
        if (n <= 0) throw protocol_error("ICResp: connection closed");
        got += static_cast<size_t>(n);
    }
    if (resp.ch.type != tp::pdu_type::ic_resp || resp.ch.plen != sizeof(resp))
        throw protocol_error(fmt::format("ICResp: bad PDU type {:#x} / PLEN {}", +resp.ch.type, +resp.ch.plen));
    if (resp.pfv != 0 || resp.cpda != 0) throw protocol_error("ICResp: PFV/CPDA not 0");
    if (resp.digest != req.digest)
        throw protocol_error(fmt::format("ICResp: digests {:#x}, asked {:#x}", +resp.digest, +req.digest));
    if (resp.maxh2cdata < 4096 || resp.maxh2cdata % 4) throw protocol_error("ICResp: bad MAXH2CDATA");
    _maxh2cdata = resp.maxh2cdata;
}

completion host_queue::connect(const std::string& subnqn, const std::string& hostnqn, const uint8_t hostid[16],
                               uint16_t qid, uint16_t cntlid, uint16_t depth, uint32_t kato_ms) {
    _qid = qid;
    nvme::connect_sqe c{};
    c.opcode = nvme::admin_opc::fabrics;
    c.fctype = nvme::fctype::connect;
    c.qid = qid;
    c.sqsize = static_cast<uint16_t>(depth - 1);
    c.kato = kato_ms;
    nvme::connect_data d{};
    std::memcpy(d.hostid, hostid, 16);
    d.cntlid = cntlid;
    nvme::copy_nul_padded(d.subnqn, sizeof(d.subnqn), subnqn);
    nvme::copy_nul_padded(d.hostnqn, sizeof(d.hostnqn), hostnqn);
    std::vector<uint8_t> data(sizeof(d));
    std::memcpy(data.data(), &d, sizeof(d));
    completion r = execute(reinterpret_cast<const nvme::sqe&>(c), data);
    if (r.status == 0) {
        _depth = depth;
        _slots.assign(depth, slot{});
        _hdr_mem.assign(size_t(depth) * 8 * hdr_buf, 0);
        _ddgst.assign(size_t(depth) * 8, 0);
        _hdr_free.clear();
        for (int i = depth * 8 - 1; i >= 0; --i) _hdr_free.push_back(i);
    }
    return r;
}

completion host_queue::execute(const nvme::sqe& cmd_in, std::span<uint8_t> data) {
    if (_hdr_free.empty() && _hdr_mem.empty()) {  // before Connect: one command at a time
        _hdr_mem.assign(8 * hdr_buf, 0);
        _ddgst.assign(8, 0);
        for (int i = 7; i >= 0; --i) _hdr_free.push_back(i);
    }
    nvme::sqe cmd = cmd_in;
    cmd.cid = static_cast<uint16_t>(_depth - 1);  // the last slot is kept for blocking commands
    submit(cmd, data);
    const uint64_t deadline_polls = 60'000;  // ~60 s at 1 ms per wait
    completion result{};
    bool done = false;
    for (uint64_t i = 0; i < deadline_polls && !done; ++i) {
        poll([&](const completion& c) {
            if (c.cid == cmd.cid) {
                result = c;
                done = true;
            }
        });
        if (!done) {
            pollfd p{_fd, POLLIN, 0};
            ::poll(&p, 1, 1);
        }
    }
    if (!done) throw protocol_error(fmt::format("qid {}: opcode {:#x} got no answer within 60 s", _qid, +cmd.opcode));
    return result;
}

uint64_t host_queue::property_get(uint32_t offset, bool eight) {
    nvme::property_sqe p{};
    p.opcode = nvme::admin_opc::fabrics;
    p.fctype = nvme::fctype::property_get;
    p.attrib = eight ? 1 : 0;
    p.offset = offset;
    auto c = execute(reinterpret_cast<const nvme::sqe&>(p), {});
    if (c.status) throw protocol_error(fmt::format("Property Get {:#x}: status {:#x}", offset, c.status));
    return c.dw0 | (uint64_t(c.dw1) << 32);
}

void host_queue::property_set(uint32_t offset, uint32_t value) {
    nvme::property_sqe p{};
    p.opcode = nvme::admin_opc::fabrics;
    p.fctype = nvme::fctype::property_set;
    p.offset = offset;
    p.value = value;
    auto c = execute(reinterpret_cast<const nvme::sqe&>(p), {});
    if (c.status) throw protocol_error(fmt::format("Property Set {:#x}: status {:#x}", offset, c.status));
}

void host_queue::submit(const nvme::sqe& cmd_in, std::span<uint8_t> data) {
    if (cmd_in.cid >= _slots.size() || _slots[cmd_in.cid].busy)
        throw std::logic_error(fmt::format("qid {}: cid {} not free", _qid, +cmd_in.cid));
    slot& s = _slots[cmd_in.cid];
    const bool fabrics = cmd_in.opcode == nvme::admin_opc::fabrics;
    s.dir = nvme::direction_of(fabrics ? reinterpret_cast<const nvme::fabrics_sqe&>(cmd_in).fctype : cmd_in.opcode);
    if (data.empty()) s.dir = nvme::data_direction::none;
    s.data = data;
    s.busy = true;
    s.c2h_done = 0;

    const size_t hd = _dg.header ? 4 : 0, dd = _dg.data ? 4 : 0;
    const bool in_capsule = s.dir == nvme::data_direction::host_to_ctrl && data.size() <= _in_capsule;
    uint8_t* h = take_header();
    auto* pdu = reinterpret_cast<tp::capsule_cmd_pdu*>(h);
    const size_t hlen = sizeof(tp::capsule_cmd_pdu);
    const size_t plen = hlen + hd + (in_capsule ? data.size() + dd : 0);
    tp::fill_header(pdu->ch, tp::pdu_type::capsule_cmd,
                    (hd ? tp::pdu_flag::hdgst : 0) | (in_capsule && dd ? tp::pdu_flag::ddgst : 0),
                    static_cast<uint8_t>(hlen), in_capsule ? static_cast<uint8_t>(hlen + hd) : 0,
                    static_cast<uint32_t>(plen));
    pdu->cmd = cmd_in;
    pdu->cmd.flags = static_cast<uint8_t>((pdu->cmd.flags & ~nvme::psdt_mask) | nvme::psdt_sgl_contiguous);  // SGL
    pdu->cmd.sgl = {};
    pdu->cmd.sgl.length = static_cast<uint32_t>(data.size());
    pdu->cmd.sgl.type = in_capsule ? nvme::sgl_data_block_offset : nvme::sgl_transport_data_block;
    if (hd) {
        uint32_t c = tp::crc32c(h, hlen);
        std::memcpy(h + hlen, &c, 4);
    }
    // Header slot hi also holds the PDU's data digest (_ddgst[hi]): it is freed when the last
    // of the two is sent, or a later PDU would overwrite a digest still queued behind the data.
    const int hi = static_cast<int>((h - _hdr_mem.data()) / hdr_buf);
    const bool digest_follows = in_capsule && dd;
    queue_tx(h, hlen + hd, digest_follows ? -1 : hi);
    if (in_capsule) {
        queue_tx(data.data(), data.size());
        if (dd) {
            _ddgst[hi] = iov_crc(data.data(), data.size());
            queue_tx(&_ddgst[hi], 4, hi);
        }
    }
}

void host_queue::send_h2c(slot& s, uint16_t cid, uint16_t ttag, uint32_t offset, uint32_t length) {
    const size_t hd = _dg.header ? 4 : 0, dd = _dg.data ? 4 : 0;
    for (uint32_t off = offset; off < offset + length;) {
        const uint32_t n = std::min(_maxh2cdata, offset + length - off);
        uint8_t* h = take_header();
        auto* pdu = reinterpret_cast<tp::data_pdu*>(h);
        const bool last = off + n == offset + length;
        tp::fill_header(pdu->ch, tp::pdu_type::h2c_data,
                        (hd ? tp::pdu_flag::hdgst : 0) | (dd ? tp::pdu_flag::ddgst : 0) |
                            (last ? tp::pdu_flag::last_pdu : 0),
                        sizeof(tp::data_pdu), static_cast<uint8_t>(sizeof(tp::data_pdu) + hd),
                        static_cast<uint32_t>(sizeof(tp::data_pdu) + hd + n + dd));
        pdu->cccid = cid;
        pdu->ttag = ttag;
        pdu->offset = off;
        pdu->length = n;
        pdu->reserved = 0;
        if (hd) {
            uint32_t c = tp::crc32c(h, sizeof(tp::data_pdu));
            std::memcpy(h + sizeof(tp::data_pdu), &c, 4);
        }
        const int hi = static_cast<int>((h - _hdr_mem.data()) / hdr_buf);
        queue_tx(h, sizeof(tp::data_pdu) + hd, dd ? -1 : hi);  // the slot stays taken until its digest is sent
        queue_tx(s.data.data() + off, n);
        if (dd) {
            _ddgst[hi] = iov_crc(s.data.data() + off, n);
            queue_tx(&_ddgst[hi], 4, hi);
        }
        off += n;
    }
}

unsigned host_queue::poll(const std::function<void(const completion&)>& done) {
    flush(false);
    _pending.clear();
    // Parse everything that is complete in the receive buffer, reading more while it comes.
    for (int round = 0; round < 8; ++round) {
        if (!receive()) break;
        size_t at = 0;
        while (_rx_have - at >= sizeof(tp::common_header)) {
            tp::common_header ch;
            std::memcpy(&ch, _rx.data() + at, sizeof(ch));
            if (ch.plen < sizeof(ch) || ch.plen > _rx.size())
                throw protocol_error(fmt::format("qid {}: PDU type {:#x} with PLEN {}", _qid, +ch.type, +ch.plen));
            if (_rx_have - at < ch.plen) break;
            handle_pdu(_rx.data() + at, ch.plen, _pending);
            at += ch.plen;
        }
        if (at) {
            std::memmove(_rx.data(), _rx.data() + at, _rx_have - at);
            _rx_have -= at;
        }
    }
    flush(false);  // H2CData queued for R2Ts
    for (const completion& c : _pending) done(c);
    return static_cast<unsigned>(_pending.size());
}

bool host_queue::receive() {
    if (_rx_have == _rx.size()) return false;
    ssize_t n = ::recv(_fd, _rx.data() + _rx_have, _rx.size() - _rx_have, MSG_DONTWAIT);
    if (n > 0) {
        _rx_have += static_cast<size_t>(n);
        return true;
    }
    if (n == 0) throw protocol_error(fmt::format("qid {}: the target closed the connection", _qid));
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
    throw protocol_error(fmt::format("qid {}: recv: {}", _qid, std::strerror(errno)));
}

void host_queue::handle_pdu(const uint8_t* p, size_t len, std::vector<completion>& out) {
    tp::common_header ch;
    std::memcpy(&ch, p, sizeof(ch));
    const size_t hd = _dg.header ? 4 : 0;
    if (ch.type == tp::pdu_type::c2h_term_req) {
        tp::term_req_pdu t;
        std::memcpy(&t, p, sizeof(t));
        throw protocol_error(fmt::format("qid {}: target sent C2HTermReq FES {:#x} FEI {}", _qid, +t.fes, +t.fei));
    }
    if (ch.hlen != 24) throw protocol_error(fmt::format("qid {}: PDU type {:#x} with HLEN {}", _qid, +ch.type, +ch.hlen));
    if (hd) {
        if (!(ch.flags & tp::pdu_flag::hdgst) || len < 28) throw protocol_error("PDU without header digest");
        uint32_t got;
        std::memcpy(&got, p + 24, 4);
        if (got != tp::crc32c(p, 24)) throw protocol_error(fmt::format("qid {}: header digest error", _qid));
    }
    switch (ch.type) {
    case tp::pdu_type::capsule_resp: {
        tp::capsule_resp_pdu r;
        std::memcpy(&r, p, sizeof(r));
        if (r.cpl.cid >= _slots.size() || !_slots[r.cpl.cid].busy)
            throw protocol_error(fmt::format("qid {}: response for idle cid {}", _qid, +r.cpl.cid));
        _slots[r.cpl.cid].busy = false;
        out.push_back({r.cpl.cid, nvme::status_from_cqe(r.cpl.status), r.cpl.dw0, r.cpl.dw1});
        return;
    }
    case tp::pdu_type::c2h_data: {
        tp::data_pdu d;
        std::memcpy(&d, p, sizeof(d));
        if (d.cccid >= _slots.size() || !_slots[d.cccid].busy) throw protocol_error("C2HData for an idle cid");
        slot& s = _slots[d.cccid];
        const size_t dd = (ch.flags & tp::pdu_flag::ddgst) ? 4 : 0;
        if (bool(dd) != _dg.data) throw protocol_error("C2HData data digest flag disagrees with negotiation");
        if (s.dir != nvme::data_direction::ctrl_to_host || uint64_t(d.offset) + d.length > s.data.size() ||
            ch.pdo < 24 + hd || size_t(ch.pdo) + d.length + dd != len)
            throw protocol_error(fmt::format("qid {}: C2HData cid {} offset {} length {} outside the buffer", _qid,
                                             +d.cccid, +d.offset, +d.length));
        const uint8_t* payload = p + ch.pdo;
        if (dd) {
            uint32_t got;
            std::memcpy(&got, p + len - 4, 4);
            if (got != tp::crc32c(payload, d.length)) throw protocol_error(fmt::format("qid {}: data digest error", _qid));
        }
        std::memcpy(s.data.data() + d.offset, payload, d.length);
        s.c2h_done += d.length;
        if (ch.flags & tp::pdu_flag::success) {
            if (!(ch.flags & tp::pdu_flag::last_pdu)) throw protocol_error("C2HData SUCCESS without LAST_PDU");
            s.busy = false;
            out.push_back({d.cccid, 0, 0, 0});
        }
        return;
    }
    case tp::pdu_type::r2t: {
        tp::data_pdu r;
        std::memcpy(&r, p, sizeof(r));
        if (r.cccid >= _slots.size() || !_slots[r.cccid].busy) throw protocol_error("R2T for an idle cid");
        slot& s = _slots[r.cccid];
        if (s.dir != nvme::data_direction::host_to_ctrl || r.length == 0 ||
            uint64_t(r.offset) + r.length > s.data.size())
            throw protocol_error(fmt::format("qid {}: R2T cid {} offset {} length {} outside the command", _qid,
                                             +r.cccid, +r.offset, +r.length));
        send_h2c(s, r.cccid, r.ttag, r.offset, r.length);
        return;
    }
    default:
        throw protocol_error(fmt::format("qid {}: unexpected PDU type {:#x}", _qid, +ch.type));
    }
}

}  // namespace ferry::perf
