// libFuzzer target for command parsing past Connect: each input runs against an enabled
// controller with an admin queue and one I/O queue already connected (the prefix the PDU
// fuzzer would have to discover first), so I/O (Read, Write, Compare, Write Zeroes, Dataset
// Management, R2T/H2CData), admin (Identify, Get Log Page, features, AER, Keep Alive) and
// fabrics commands on live queues are what gets fuzzed.
// Input: a flag byte, a split byte, then the byte stream. Flag bit 0: the stream goes to the
// I/O queue (else the admin queue); bit 2: header digests, bit 3: data digests on both queues.
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_host.hh"

using ferry::fuzz::session;
using ferry::fuzz::world;
namespace transport = ferry::transport;

namespace {
// CNTLID from the first capsule response after the ICResp (the admin Connect's).
bool connect_cntlid(const std::vector<uint8_t>& rx, bool hd, uint16_t& cntlid) {
    const size_t at = sizeof(transport::ic_resp_pdu);
    if (rx.size() < at + sizeof(transport::capsule_resp_pdu) + (hd ? 4 : 0)) return false;
    transport::capsule_resp_pdu r;
    std::memcpy(&r, rx.data() + at, sizeof(r));
    if (r.ch.type != transport::pdu_type::capsule_resp || (r.cpl.status >> 1) != 0) return false;
    cntlid = static_cast<uint16_t>(r.cpl.dw0);
    return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static world w;
    ferry::fuzz::input in;
    if (!ferry::fuzz::parse_input(data, size, in)) return 0;
    const uint8_t flags = in.flags;
    const size_t split = in.split;
    data = in.stream;
    size = in.stream_size;
    const bool hd = in.header_digest(), dd = in.data_digest();

    session admin(w, 1);
    if (!admin.conn) return 0;
    std::vector<uint8_t> pre;
    ferry::fuzz::append_ic_req(pre, hd, dd);
    ferry::fuzz::append_connect(pre, 0, 0xFFFF, hd, dd);
    admin.feed(pre.data(), pre.size(), pre.size());
    uint16_t cntlid = 0;
    if (!connect_cntlid(admin.received, hd, cntlid)) __builtin_trap();  // the prefix must work
    pre.clear();
    ferry::fuzz::append_enable(pre, hd);
    admin.feed(pre.data(), pre.size(), pre.size());

    session io(w, 2);
    if (!io.conn) return 0;
    pre.clear();
    ferry::fuzz::append_ic_req(pre, hd, dd);
    ferry::fuzz::append_connect(pre, 1, cntlid, hd, dd);
    io.feed(pre.data(), pre.size(), pre.size());
    if (!io.conn->queue_configured()) __builtin_trap();

    session& target = (flags & 1) ? io : admin;
    target.feed(data, size, split);
    return 0;
}
