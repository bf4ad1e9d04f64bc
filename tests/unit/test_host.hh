// A minimal NVMe/TCP host for unit tests: drives one transport::connection (with the real
// target behind it) over a socketpair, in the test's own thread. The host side writes PDUs
// byte-exact, so tests can also send malformed ones.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "env/dma_pool.hh"
#include "env/thread.hh"
#include "target/queue.hh"
#include "target/target.hh"
#include "transport/connection.hh"
#include "transport/pdu.hh"

namespace ferry::test {

// Latency bounds (a legitimate host connects within 1 s, p99 under 5 ms...) are the issue's
// numbers in the optimized build. Sanitizer builds run the same code 3-15x slower, so there
// the bounds are multiplied by this factor: they still catch a reactor that stalls for the
// whole timeout under test (seconds), which is what those tests are about.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr double timing_slack = 4.0;
#else
inline constexpr double timing_slack = 1.0;
#endif

// A TCP connection to 127.0.0.1:`port` (for the reactor tests), from `source` if given
// (another loopback address, e.g. "127.0.0.2", to act as a second host).
inline int dial(uint16_t port, const char* source = nullptr) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    if (source) {
        sockaddr_in s{};
        s.sin_family = AF_INET;
        ::inet_pton(AF_INET, source, &s.sin_addr);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof(s)) != 0) {
            const std::string err = std::strerror(errno);
            ::close(fd);
            throw std::runtime_error("bind " + std::string(source) + ": " + err);
        }
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        const std::string err = std::strerror(errno);
        ::close(fd);
        throw std::runtime_error("connect to port " + std::to_string(port) + ": " + err);
    }
    return fd;
}

inline constexpr const char* host_a = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555";
inline constexpr const char* host_b = "nqn.2014-08.org.nvmexpress:uuid:66666666-7777-4888-9999-aaaaaaaaaaaa";
inline constexpr const char* open_nqn = "nqn.2026-11.io.ferry:open";
inline constexpr const char* restricted_nqn = "nqn.2026-11.io.ferry:restricted";

// Two subsystems: "open" (any host, NSID 1 of 16 MiB with 4 KiB blocks, NSID 3 of 1 MiB with
// 512 B blocks) and "restricted" (host_a only, NSID 1 of 1 MiB).
inline target::target_config test_config() {
    target::target_config cfg;
    cfg.listeners.push_back({"127.0.0.1", 4420});
    target::subsystem_config open;
    open.nqn = open_nqn;
    open.allow_any_host = true;
    open.namespaces.push_back({1, target::backend_kind::ram, 16u << 20, 4096, std::nullopt, std::nullopt, std::nullopt, {}, {}, 0, {}});
    open.namespaces.push_back({3, target::backend_kind::ram, 1u << 20, 512, std::nullopt, std::nullopt, std::nullopt, {}, {}, 0, {}});
    cfg.subsystems.push_back(open);
    target::subsystem_config restricted;
    restricted.nqn = restricted_nqn;
    restricted.hosts.push_back(host_a);
    restricted.namespaces.push_back({1, target::backend_kind::ram, 1u << 20, 4096, std::nullopt, std::nullopt, std::nullopt, {}, {}, 0, {}});
    cfg.subsystems.push_back(restricted);
    return cfg;
}

struct harness {
    target::target tgt;
    env::dma_pool pool;
    transport::buffer_arbiter buffers;
    // connection_chunks: the per-connection cap on extra pool chunks (0 = the reactor default).
    explicit harness(const target::target_config& cfg = test_config(), size_t pool_bytes = 32u << 20,
                     size_t connection_chunks = 0)
        : tgt(cfg), pool(pool_bytes), buffers(pool, connection_chunks) {}
};

// A Read/Write/Compare/Write Zeroes/Flush command for NSID `nsid` (the caller sets the cid).
inline nvme::sqe io_command(uint8_t opcode, uint32_t nsid, uint64_t slba, uint32_t nlb) {
    nvme::sqe c{};
    c.opcode = opcode;
    c.nsid = nsid;
    c.cdw10 = static_cast<uint32_t>(slba);
    c.cdw11 = static_cast<uint32_t>(slba >> 32);
    c.cdw12 = nlb - 1;
    return c;
}

// Records the completions a block queue delivers.
struct completion_recorder final : nvme::io_completion {
    int calls = 0;
    uint16_t status = 0xFFFF;
    void complete(uint16_t s) override {
        ++calls;
        status = s;
    }
};

struct response {
    nvme::cqe cqe{};
    uint16_t status = 0;  // SCT<<8|SC (|DNR), nvme::sc convention
    std::vector<uint8_t> data;
    bool got_resp = false;       // a CapsuleResp arrived (false: C2H SUCCESS ended the command)
    uint8_t last_c2h_flags = 0;
};

struct term_request {
    uint16_t fes = 0;
    uint32_t fei = 0;
};

class host_conn {
public:
    // A connection to a target served by remote reactor threads: `fd` is a connected socket.
    host_conn(int fd, bool hdgst, bool ddgst) : _fd(fd) {
        ::fcntl(fd, F_SETFL, O_NONBLOCK);
        _dg.header = hdgst;
        _dg.data = ddgst;
    }

    // A connection driven in this thread: the target side is `conn`, reached as if through the
    // listener 127.0.0.1:`local_port`.
    explicit host_conn(harness& h, bool hdgst = false, bool ddgst = false, uint16_t local_port = 4420) {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
        ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
        ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
        _fd = fds[0];
        transport::connection_info info;
        info.id = ++_next_id;
        info.peer = "test-host:" + std::to_string(info.id);
        info.local_addr = "127.0.0.1";
        info.local_port = local_port;
        conn = std::make_unique<transport::connection>(fds[1], info, h.buffers, h.tgt, env::now_ns());
        _dg.header = hdgst;
        _dg.data = ddgst;
    }
    ~host_conn() {
        if (_fd >= 0) ::close(_fd);
    }

    std::unique_ptr<transport::connection> conn;
    transport::digests digests() const { return _dg; }
    target::queue& queue() { return static_cast<target::queue&>(*conn->handler()); }

    // True when bytes from the target wait to be read (does not block).
    bool readable() {
        pollfd p{_fd, POLLIN, 0};
        return ::poll(&p, 1, 0) == 1;
    }

    void pump() {
        if (!conn) {  // the target runs elsewhere: give it a moment
            pollfd p{_fd, POLLIN, 0};
            ::poll(&p, 1, 1);
            return;
        }
        for (int i = 0; i < 4; ++i) {
            conn->on_readable();
            conn->retry_waiting();
            conn->handler()->poll();
            conn->flush();
        }
    }

    void send_raw(const void* p, size_t n) {
        auto* b = static_cast<const uint8_t*>(p);
        while (n) {
            ssize_t w = ::send(_fd, b, n, MSG_NOSIGNAL);
            if (w > 0) {
                b += w;
                n -= static_cast<size_t>(w);
            } else if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                break;  // the target closed: what it sent before is still readable
            } else if (w < 0 && errno != EAGAIN) {
                throw std::runtime_error(std::string("host send: ") + std::strerror(errno));
            }
            pump();
        }
        pump();
    }

    // Reads exactly n bytes; false on EOF (the target closed). Waits up to 10 s.
    bool recv_exact(void* p, size_t n) {
        auto* b = static_cast<uint8_t*>(p);
        const uint64_t deadline = env::now_ns() + 10'000'000'000ull;
        for (int idle = 0; n && (idle < 5000 || env::now_ns() < deadline);) {
            ssize_t r = ::recv(_fd, b, n, MSG_DONTWAIT);
            if (r > 0) {
                b += r;
                n -= static_cast<size_t>(r);
                idle = 0;
                continue;
            }
            if (r == 0) return false;
            pump();
            if (++idle > 1000 && conn) ::usleep(100);  // a backend doing real I/O (files)
        }
        if (n) throw std::runtime_error("host: timed out waiting for the target");
        return true;
    }

    // True when the target has closed its end (EOF after draining whatever is left).
    bool target_closed() {
        uint8_t b[4096];
        for (int tries = 0; tries < (conn ? 1 : 2000); ++tries) {
            pump();
            for (;;) {
                ssize_t r = ::recv(_fd, b, sizeof(b), MSG_DONTWAIT);
                if (r == 0) return true;
                if (r < 0) break;
            }
        }
        return false;
    }

    transport::ic_resp_pdu icreq() {
        transport::ic_req_pdu req{};
        transport::fill_header(req.ch, transport::pdu_type::ic_req, 0, sizeof(req), 0, sizeof(req));
        req.digest = (_dg.header ? 1 : 0) | (_dg.data ? 2 : 0);
        send_raw(&req, sizeof(req));
        transport::ic_resp_pdu resp{};
        if (!recv_exact(&resp, sizeof(resp))) throw std::runtime_error("no ICResp");
        return resp;
    }

    // Sends a CapsuleCmd. Write data goes in the capsule when `in_capsule`, else via R2T.
    void send_capsule(const nvme::sqe& cmd_in, const std::vector<uint8_t>& data, bool in_capsule,
                      uint32_t transfer_len) {
        nvme::sqe cmd = cmd_in;
        cmd.flags = static_cast<uint8_t>((cmd.flags & ~nvme::psdt_mask) | psdt);
        const size_t hd = _dg.header ? 4 : 0, dd = _dg.data ? 4 : 0;
        const bool carry = in_capsule && !data.empty();
        cmd.sgl = {};
        cmd.sgl.length = carry ? static_cast<uint32_t>(data.size()) : transfer_len;
        cmd.sgl.type = carry ? nvme::sgl_data_block_offset : nvme::sgl_transport_data_block;
        std::vector<uint8_t> pdu(sizeof(transport::capsule_cmd_pdu) + hd);
        auto* h = reinterpret_cast<transport::capsule_cmd_pdu*>(pdu.data());
        uint8_t flags = (hd ? transport::pdu_flag::hdgst : 0) | (carry && dd ? transport::pdu_flag::ddgst : 0);
        const size_t pdo = carry ? pdu.size() : 0;
        transport::fill_header(h->ch, transport::pdu_type::capsule_cmd, flags, sizeof(transport::capsule_cmd_pdu),
                               static_cast<uint8_t>(pdo),
                               static_cast<uint32_t>(pdu.size() + (carry ? data.size() + dd : 0)));
        h->cmd = cmd;
        if (hd) put_crc(pdu, sizeof(transport::capsule_cmd_pdu));
        if (carry) {
            pdu.insert(pdu.end(), data.begin(), data.end());
            if (dd) append_crc(pdu, data.data(), data.size());
        }
        send_raw(pdu.data(), pdu.size());
    }

    void send_h2c(uint16_t cid, uint16_t ttag, uint32_t offset, const uint8_t* d, uint32_t len, bool last,
                  bool corrupt_ddgst = false) {
        const size_t hd = _dg.header ? 4 : 0, dd = _dg.data ? 4 : 0;
        std::vector<uint8_t> pdu(sizeof(transport::data_pdu) + hd);
        auto* h = reinterpret_cast<transport::data_pdu*>(pdu.data());
        uint8_t flags = (hd ? transport::pdu_flag::hdgst : 0) | (dd ? transport::pdu_flag::ddgst : 0) |
                        (last ? transport::pdu_flag::last_pdu : 0);
        transport::fill_header(h->ch, transport::pdu_type::h2c_data, flags, sizeof(transport::data_pdu),
                               static_cast<uint8_t>(pdu.size()), static_cast<uint32_t>(pdu.size() + len + dd));
        h->cccid = cid;
        h->ttag = ttag;
        h->offset = offset;
        h->length = len;
        if (hd) put_crc(pdu, sizeof(transport::data_pdu));
        pdu.insert(pdu.end(), d, d + len);
        if (dd) {
            append_crc(pdu, d, len);
            if (corrupt_ddgst) pdu.back() ^= 0xFF;
        }
        send_raw(pdu.data(), pdu.size());
    }

    // Reads PDUs until the command `cid` ends; answers R2Ts with `write_data`.
    // Returns nullopt if the target closed the connection instead (see last_term).
    std::optional<response> wait(uint16_t cid, const std::vector<uint8_t>& write_data = {},
                                 bool corrupt_h2c_ddgst = false) {
        response r;
        for (;;) {
            transport::common_header ch;
            if (!recv_exact(&ch, sizeof(ch))) return std::nullopt;
            std::vector<uint8_t> rest(ch.plen - sizeof(ch));
            if (!rest.empty() && !recv_exact(rest.data(), rest.size())) return std::nullopt;
            std::vector<uint8_t> whole(sizeof(ch));
            std::memcpy(whole.data(), &ch, sizeof(ch));
            whole.insert(whole.end(), rest.begin(), rest.end());
            check_hdgst(whole);
            switch (ch.type) {
            case transport::pdu_type::capsule_resp: {
                auto* p = reinterpret_cast<transport::capsule_resp_pdu*>(whole.data());
                r.cqe = p->cpl;
                r.status = nvme::status_from_cqe(r.cqe.status);
                r.got_resp = true;
                if (r.cqe.cid != cid) throw std::runtime_error("response for an unexpected cid");
                return r;
            }
            case transport::pdu_type::c2h_data: {
                auto* p = reinterpret_cast<transport::data_pdu*>(whole.data());
                if (p->cccid != cid) throw std::runtime_error("C2HData for an unexpected cid");
                const size_t dd = (ch.flags & transport::pdu_flag::ddgst) ? 4 : 0;
                const uint8_t* d = whole.data() + ch.pdo;
                if (dd) {
                    uint32_t got;
                    std::memcpy(&got, whole.data() + ch.plen - 4, 4);
                    if (got != transport::crc32c(d, p->length)) throw std::runtime_error("C2HData data digest wrong");
                }
                if (r.data.size() < p->offset + p->length) r.data.resize(p->offset + p->length);
                std::memcpy(r.data.data() + p->offset, d, p->length);
                r.last_c2h_flags = ch.flags;
                if (ch.flags & transport::pdu_flag::success) return r;
                break;
            }
            case transport::pdu_type::r2t: {
                auto* p = reinterpret_cast<transport::data_pdu*>(whole.data());
                r2ts.push_back(*p);
                const uint32_t end = p->offset + p->length;
                const uint32_t chunk = max_h2c ? max_h2c : 65536;
                for (uint32_t off = p->offset; off < end; off += chunk) {
                    uint32_t n = std::min(chunk, end - off);
                    send_h2c(p->cccid, p->ttag, off, write_data.data() + off, n, off + n == end, corrupt_h2c_ddgst);
                }
                break;
            }
            case transport::pdu_type::c2h_term_req: {
                auto* p = reinterpret_cast<transport::term_req_pdu*>(whole.data());
                last_term = term_request{p->fes, p->fei};
                return std::nullopt;
            }
            default:
                throw std::runtime_error("unexpected PDU type " + std::to_string(ch.type));
            }
        }
    }

    // Reads the next PDU, which must be a C2HTermReq (after a protocol error).
    std::optional<term_request> expect_term() {
        transport::common_header ch;
        if (!recv_exact(&ch, sizeof(ch))) return std::nullopt;
        std::vector<uint8_t> rest(ch.plen - sizeof(ch));
        if (!rest.empty() && !recv_exact(rest.data(), rest.size())) return std::nullopt;
        if (ch.type != transport::pdu_type::c2h_term_req) return std::nullopt;
        transport::term_req_pdu t;
        std::memcpy(&t.fes, rest.data(), 2);
        std::memcpy(&t.fei, rest.data() + 2, 4);
        return term_request{t.fes, t.fei};
    }

    response cmd(const nvme::sqe& c, const std::vector<uint8_t>& write = {}, uint32_t read_len = 0,
                 bool in_capsule = true) {
        send_capsule(c, write, in_capsule, write.empty() ? read_len : static_cast<uint32_t>(write.size()));
        auto r = wait(c.cid, write);
        if (!r) throw std::runtime_error("connection closed while waiting for cid " + std::to_string(c.cid));
        return *r;
    }

    // Fabrics helpers.
    response connect(const std::string& subnqn, const std::string& hostnqn, uint16_t qid, uint16_t cntlid,
                     uint16_t sqsize = 31, uint32_t kato = 5000, uint8_t cattr = 0) {
        const uint16_t cid = send_connect(subnqn, hostnqn, qid, cntlid, sqsize, kato, cattr);
        auto r = wait(cid);
        if (!r) throw std::runtime_error("connection closed while waiting for the Connect (cid " + std::to_string(cid) + ")");
        return *r;
    }
    // Sends a Connect without waiting for its answer (a Connect the target parks); returns its cid.
    uint16_t send_connect(const std::string& subnqn, const std::string& hostnqn, uint16_t qid, uint16_t cntlid,
                          uint16_t sqsize = 31, uint32_t kato = 5000, uint8_t cattr = 0) {
        nvme::connect_sqe c{};
        c.opcode = nvme::admin_opc::fabrics;
        c.cid = next_cid();
        c.fctype = nvme::fctype::connect;
        c.qid = qid;
        c.sqsize = sqsize;
        c.kato = kato;
        c.cattr = cattr;
        nvme::connect_data d{};
        auto hid = target::derive_id(hostnqn);
        std::memcpy(d.hostid, hid.data(), 16);
        d.cntlid = cntlid;
        nvme::copy_nul_padded(d.subnqn, sizeof(d.subnqn), subnqn);
        nvme::copy_nul_padded(d.hostnqn, sizeof(d.hostnqn), hostnqn);
        std::vector<uint8_t> data(sizeof(d));
        std::memcpy(data.data(), &d, sizeof(d));
        send_capsule(reinterpret_cast<const nvme::sqe&>(c), data, true, static_cast<uint32_t>(data.size()));
        return c.cid;
    }

    response property_get(uint32_t offset, bool eight = false) {
        return property(nvme::fctype::property_get, offset, eight ? 1 : 0, 0);
    }
    response property_set(uint32_t offset, uint64_t value) {
        return property(nvme::fctype::property_set, offset, 0, value);
    }
    response property(uint8_t fctype, uint32_t offset, uint8_t attrib, uint64_t value) {
        nvme::property_sqe p{};
        p.opcode = nvme::admin_opc::fabrics;
        p.cid = next_cid();
        p.fctype = fctype;
        p.attrib = attrib;
        p.offset = offset;
        p.value = value;
        return cmd(reinterpret_cast<const nvme::sqe&>(p));
    }

    // ICReq, admin Connect, CC.EN=1 with NVM settings; returns the cntlid.
    uint16_t bring_up_admin(const std::string& subnqn, const std::string& hostnqn, uint32_t kato = 5000) {
        icreq();
        auto r = connect(subnqn, hostnqn, 0, 0xFFFF, 31, kato);
        if (r.status != 0) throw std::runtime_error("admin connect failed: " + std::to_string(r.status));
        const uint16_t cntlid = static_cast<uint16_t>(r.cqe.dw0);
        property_set(nvme::reg::cc, (6u << 16) | (4u << 20) | 1u);
        return cntlid;
    }

    nvme::sqe make(uint8_t opcode, uint32_t nsid = 0) {
        nvme::sqe c{};
        c.opcode = opcode;
        c.cid = next_cid();
        c.nsid = nsid;
        return c;
    }

    response identify(uint8_t cns, uint32_t nsid = 0, uint8_t csi = 0) {
        auto c = make(nvme::admin_opc::identify, nsid);
        c.cdw10 = cns;
        c.cdw11 = uint32_t(csi) << 24;
        return cmd(c, {}, 4096);
    }

    response get_log(uint8_t lid, uint32_t len, uint64_t offset = 0, bool rae = false) {
        auto c = make(nvme::admin_opc::get_log_page);
        const uint32_t numd = len / 4 - 1;
        c.cdw10 = lid | (rae ? 1u << 15 : 0) | ((numd & 0xFFFF) << 16);
        c.cdw11 = numd >> 16;
        c.cdw12 = static_cast<uint32_t>(offset);
        c.cdw13 = static_cast<uint32_t>(offset >> 32);
        return cmd(c, {}, len);
    }

    nvme::sqe rw(uint8_t opcode, uint32_t nsid, uint64_t slba, uint32_t nlb) {
        auto c = io_command(opcode, nsid, slba, nlb);
        c.cid = next_cid();
        return c;
    }

    uint16_t next_cid() { return _cid++; }

    // SQE byte 1 bits 7:6 of every command sent: SGL with a contiguous metadata buffer, what
    // Linux and SPDK hosts send (a test sets another to see it refused).
    uint8_t psdt = nvme::psdt_sgl_contiguous;
    std::optional<term_request> last_term;
    std::vector<transport::data_pdu> r2ts;
    uint32_t max_h2c = 0;

private:
    void put_crc(std::vector<uint8_t>& pdu, size_t hlen) {
        uint32_t d = transport::crc32c(pdu.data(), hlen);
        std::memcpy(pdu.data() + hlen, &d, 4);
    }
    void append_crc(std::vector<uint8_t>& pdu, const uint8_t* d, size_t n) {
        uint32_t c = transport::crc32c(d, n);
        const auto* b = reinterpret_cast<const uint8_t*>(&c);
        pdu.insert(pdu.end(), b, b + 4);
    }
    void check_hdgst(const std::vector<uint8_t>& pdu) {
        if (!_dg.header) return;
        const auto& ch = *reinterpret_cast<const transport::common_header*>(pdu.data());
        if (ch.type == transport::pdu_type::c2h_term_req) return;
        if (!(ch.flags & transport::pdu_flag::hdgst)) throw std::runtime_error("PDU without HDGST flag");
        uint32_t got;
        std::memcpy(&got, pdu.data() + ch.hlen, 4);
        if (got != transport::crc32c(pdu.data(), ch.hlen)) throw std::runtime_error("bad header digest from target");
    }

    int _fd = -1;
    transport::digests _dg;
    uint16_t _cid = 1;
    static inline uint64_t _next_id = 0;
};

// An association with the target: an admin queue brought up (enabled) for host_a, and I/O
// queue 1 of depth io_sqsize + 1 connected to the same controller.
struct association {
    host_conn admin;
    host_conn io;
    uint16_t cntlid = 0;
    explicit association(harness& h, uint32_t kato_ms = 5000, uint16_t io_sqsize = 127, bool hdgst = false,
                         bool ddgst = false, uint8_t cattr = 0)
        : admin(h), io(h, hdgst, ddgst) {
        cntlid = admin.bring_up_admin(open_nqn, host_a, kato_ms);
        io.icreq();
        auto r = io.connect(open_nqn, host_a, 1, cntlid, io_sqsize, 0, cattr);
        if (r.status) throw std::runtime_error("I/O queue connect failed: status " + std::to_string(r.status));
    }
};

inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
    std::vector<uint8_t> v(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; ++i) {
        x = x * 1103515245u + 12345u;
        v[i] = static_cast<uint8_t>(x >> 16);
    }
    return v;
}

}  // namespace ferry::test
