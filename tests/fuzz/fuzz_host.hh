// Shared by the fuzz targets: a target to fuzz (one subsystem, RAM namespaces with 512 B and
// 4 KiB blocks, any host), the host PDUs that open a queue (ICReq, Connect, Property Set), and
// a connection over a socketpair whose responses are read back and, where needed, parsed.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <spdlog/spdlog.h>

#include "env/dma_pool.hh"
#include "env/thread.hh"
#include "target/target.hh"
#include "transport/connection.hh"
#include "transport/pdu.hh"

namespace ferry::fuzz {

inline constexpr const char* subsystem_nqn = "nqn.2026-11.io.ferry:fuzz";
inline constexpr const char* host_nqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555";

struct world {
    target::target tgt;
    env::dma_pool pool{8u << 20};
    transport::buffer_arbiter buffers{pool};
    // Logs are off unless FERRY_FUZZ_LOG names a level (to see what an input does).
    world() : tgt(make_config()) {
        const char* level = std::getenv("FERRY_FUZZ_LOG");
        spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::off);
    }
    static target::target_config make_config() {
        target::target_config cfg;
        cfg.listeners.push_back({"127.0.0.1", 4420});
        target::subsystem_config s;
        s.nqn = subsystem_nqn;
        s.allow_any_host = true;
        target::namespace_config small;  // NSID 1: 1 MiB of 512 B blocks
        small.nsid = 1;
        small.size_bytes = 1u << 20;
        small.block_size = 512;
        target::namespace_config large = small;  // NSID 2: 4 MiB of 4 KiB blocks
        large.nsid = 2;
        large.size_bytes = 4u << 20;
        large.block_size = 4096;
        s.namespaces = {small, large};
        cfg.subsystems.push_back(s);
        return cfg;
    }
};

// A fuzz input: a flag byte (bits 2-3: header and data digests; the other bits are the target's
// own), a split byte (the stream is fed in pieces of that size, at least 1) and the stream.
struct input {
    uint8_t flags = 0;
    size_t split = 1;
    const uint8_t* stream = nullptr;
    size_t stream_size = 0;
    bool header_digest() const { return flags & 4; }
    bool data_digest() const { return flags & 8; }
};
inline bool parse_input(const uint8_t* data, size_t size, input& in) {
    if (size < 2) return false;
    in = {data[0], size_t{data[1]} | 1, data + 2, size - 2};
    return true;
}

// Appends a PDU made of `header` (HLEN bytes) and `data`, with the digests asked for.
inline void append_pdu(std::vector<uint8_t>& out, const void* header, size_t hlen, const void* data, size_t len,
                       bool hd, bool dd) {
    const size_t at = out.size();
    const size_t hd_bytes = hd ? 4 : 0, dd_bytes = dd && len ? 4 : 0;
    out.resize(at + hlen + hd_bytes + len + dd_bytes);
    uint8_t* p = out.data() + at;
    std::memcpy(p, header, hlen);
    auto* ch = reinterpret_cast<transport::common_header*>(p);
    ch->flags =
        static_cast<uint8_t>((ch->flags & ~(transport::pdu_flag::hdgst | transport::pdu_flag::ddgst)) |
                             (hd ? transport::pdu_flag::hdgst : 0) | (dd_bytes ? transport::pdu_flag::ddgst : 0));
    ch->hlen = static_cast<uint8_t>(hlen);
    ch->pdo = len ? static_cast<uint8_t>(hlen + hd_bytes) : 0;
    ch->plen = static_cast<uint32_t>(hlen + hd_bytes + len + dd_bytes);
    if (hd) {
        const uint32_t crc = transport::crc32c(p, hlen);
        std::memcpy(p + hlen, &crc, 4);
    }
    if (len) std::memcpy(p + hlen + hd_bytes, data, len);
    if (dd_bytes) {
        const uint32_t crc = transport::crc32c(data, len);
        std::memcpy(p + hlen + hd_bytes + len, &crc, 4);
    }
}

inline void append_ic_req(std::vector<uint8_t>& out, bool hd, bool dd) {
    transport::ic_req_pdu ic{};
    transport::fill_header(ic.ch, transport::pdu_type::ic_req, 0, 128, 0, 128);
    ic.digest = (hd ? 1 : 0) | (dd ? 2 : 0);
    const size_t at = out.size();
    out.resize(at + sizeof(ic));
    std::memcpy(out.data() + at, &ic, sizeof(ic));
}

// A command capsule with `len` bytes of in-capsule data.
inline void append_capsule(std::vector<uint8_t>& out, const nvme::sqe& cmd, const void* data, size_t len, bool hd,
                           bool dd) {
    transport::capsule_cmd_pdu pdu{};
    transport::fill_header(pdu.ch, transport::pdu_type::capsule_cmd, 0, sizeof(pdu), 0, 0);
    pdu.cmd = cmd;
    pdu.cmd.flags = static_cast<uint8_t>((pdu.cmd.flags & ~nvme::psdt_mask) | nvme::psdt_sgl_contiguous);
    if (len) {
        pdu.cmd.sgl.type = nvme::sgl_data_block_offset;
        pdu.cmd.sgl.address = 0;
        pdu.cmd.sgl.length = static_cast<uint32_t>(len);
    }
    append_pdu(out, &pdu, sizeof(pdu), data, len, hd, dd);
}

inline void append_connect(std::vector<uint8_t>& out, uint16_t qid, uint16_t cntlid, bool hd, bool dd) {
    nvme::connect_data d{};
    d.hostid[0] = 1;
    d.cntlid = cntlid;
    nvme::copy_nul_padded(d.subnqn, sizeof(d.subnqn), subsystem_nqn);
    nvme::copy_nul_padded(d.hostnqn, sizeof(d.hostnqn), host_nqn);
    nvme::sqe cmd{};
    auto& c = reinterpret_cast<nvme::connect_sqe&>(cmd);
    c.opcode = nvme::admin_opc::fabrics;
    c.fctype = nvme::fctype::connect;
    c.cid = 1;
    c.qid = qid;
    c.sqsize = 31;
    c.kato = qid == 0 ? 5000 : 0;
    append_capsule(out, cmd, &d, sizeof(d), hd, dd);
}

// Property Set CC: enabled, 64-byte SQEs, 16-byte CQEs.
inline void append_enable(std::vector<uint8_t>& out, bool hd) {
    nvme::sqe cmd{};
    auto& p = reinterpret_cast<nvme::property_sqe&>(cmd);
    p.opcode = nvme::admin_opc::fabrics;
    p.fctype = nvme::fctype::property_set;
    p.cid = 2;
    p.offset = nvme::reg::cc;
    p.value = nvme::cc::en | (6u << 16) | (4u << 20);
    append_capsule(out, cmd, nullptr, 0, hd, false);
}

// One target connection over a socketpair; the test end collects what the target sends.
class session {
public:
    session(world& w, uint64_t id) {
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, _fds) != 0) return;
        transport::connection_info info;
        info.id = id;
        info.peer = "fuzz";
        info.local_addr = "127.0.0.1";
        conn = std::make_unique<transport::connection>(_fds[1], info, w.buffers, w.tgt, env::now_ns());
    }
    ~session() {
        if (conn) conn->close("fuzz input done");
        conn.reset();  // closes _fds[1]
        if (_fds[0] >= 0) ::close(_fds[0]);
    }
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    // Feeds `len` bytes in pieces of `split`, running the connection as a reactor would.
    void feed(const uint8_t* data, size_t len, size_t split) {
        for (size_t at = 0; at < len && conn && !conn->closing();) {
            const size_t n = std::min(split, len - at);
            conn->feed(data + at, n);
            at += n;
            pump();
        }
    }
    void pump() {
        conn->handler()->poll();
        conn->retry_waiting();
        conn->flush();
        uint8_t buf[65536];
        ssize_t n;
        while ((n = ::recv(_fds[0], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
            if (received.size() < (1u << 16)) received.insert(received.end(), buf, buf + n);
    }

    std::unique_ptr<transport::connection> conn;
    std::vector<uint8_t> received;

private:
    int _fds[2] = {-1, -1};
};

}  // namespace ferry::fuzz
