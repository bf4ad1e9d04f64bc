// libFuzzer target for the receive path: PDU decoding, capsule/data state machine and command
// parsing of the real target. The input is split into a flag byte and a byte stream fed to one
// connection. Flag bit 0: prefix a valid ICReq; bit 1: also a valid admin Connect; bits 2-3:
// digests asked in that ICReq. Bytes are fed in pieces whose sizes come from the input, so
// every split of the stream is explored.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include <spdlog/spdlog.h>

#include "env/dma_pool.hh"
#include "env/thread.hh"
#include "target/target.hh"
#include "transport/connection.hh"
#include "transport/pdu.hh"

using namespace ferry;

namespace {
struct world {
    target::target tgt;
    env::dma_pool pool{8u << 20};
    transport::buffer_arbiter buffers{pool};
    world() : tgt(make_config()) { spdlog::set_level(spdlog::level::off); }
    static target::target_config make_config() {
        target::target_config cfg;
        cfg.listeners.push_back({"127.0.0.1", 4420});
        target::subsystem_config s;
        s.nqn = "nqn.2026-11.io.ferry:fuzz";
        s.allow_any_host = true;
        s.namespaces.push_back({1, target::backend_kind::ram, 1u << 20, 512, std::nullopt, {}, {}, 0});
        cfg.subsystems.push_back(s);
        return cfg;
    }
};

std::vector<uint8_t> prefix(uint8_t flags) {
    std::vector<uint8_t> out;
    transport::ic_req_pdu ic{};
    transport::fill_header(ic.ch, transport::pdu_type::ic_req, 0, 128, 0, 128);
    const bool hd = flags & 4, dd = flags & 8;
    ic.digest = (hd ? 1 : 0) | (dd ? 2 : 0);
    out.resize(sizeof(ic));
    std::memcpy(out.data(), &ic, sizeof(ic));
    if (!(flags & 2)) return out;
    nvme::connect_data d{};
    d.hostid[0] = 1;
    d.cntlid = 0xFFFF;
    nvme::copy_nul_padded(d.subnqn, 256, "nqn.2026-11.io.ferry:fuzz");
    nvme::copy_nul_padded(d.hostnqn, 256, "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555");
    const size_t hlen = 72 + (hd ? 4 : 0);
    std::vector<uint8_t> pdu(hlen + sizeof(d) + (dd ? 4 : 0));
    auto* p = reinterpret_cast<transport::capsule_cmd_pdu*>(pdu.data());
    transport::fill_header(p->ch, transport::pdu_type::capsule_cmd,
                           (hd ? transport::pdu_flag::hdgst : 0) | (dd ? transport::pdu_flag::ddgst : 0), 72,
                           static_cast<uint8_t>(hlen), static_cast<uint32_t>(pdu.size()));
    auto& c = reinterpret_cast<nvme::connect_sqe&>(p->cmd);
    c.opcode = nvme::admin_opc::fabrics;
    c.fctype = nvme::fctype::connect;
    c.sqsize = 31;
    c.kato = 5000;
    c.sgl.type = nvme::sgl_data_block_offset;
    c.sgl.length = sizeof(d);
    if (hd) {
        uint32_t crc = transport::crc32c(pdu.data(), 72);
        std::memcpy(pdu.data() + 72, &crc, 4);
    }
    std::memcpy(pdu.data() + hlen, &d, sizeof(d));
    if (dd) {
        uint32_t crc = transport::crc32c(&d, sizeof(d));
        std::memcpy(pdu.data() + hlen + sizeof(d), &crc, 4);
    }
    out.insert(out.end(), pdu.begin(), pdu.end());
    return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static world w;
    if (size < 2) return 0;
    const uint8_t flags = data[0];
    const uint8_t split = data[1] | 1;
    data += 2;
    size -= 2;

    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) return 0;
    // Let the target's responses go anywhere: the host end is drained and closed below.
    transport::connection_info info;
    info.id = 1;
    info.peer = "fuzz";
    info.local_addr = "127.0.0.1";
    {
        transport::connection conn(fds[1], info, w.buffers, w.tgt, env::now_ns());
        std::vector<uint8_t> stream = (flags & 1) ? prefix(flags) : std::vector<uint8_t>{};
        stream.insert(stream.end(), data, data + size);
        uint8_t sink[65536];
        for (size_t at = 0; at < stream.size() && !conn.closing();) {
            size_t n = std::min<size_t>(split, stream.size() - at);
            conn.feed(stream.data() + at, n);
            at += n;
            conn.retry_waiting();
            conn.flush();
            while (::recv(fds[0], sink, sizeof(sink), MSG_DONTWAIT) > 0) {
            }
        }
        conn.close("fuzz input done");
    }
    ::close(fds[0]);
    return 0;
}
