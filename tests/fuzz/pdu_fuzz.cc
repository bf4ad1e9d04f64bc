// libFuzzer target for the receive path: PDU decoding, capsule/data state machine and command
// parsing of the real target. The input is a flag byte, a split byte and a byte stream fed to
// one connection. Flag bit 0: prefix a valid ICReq; bit 1: also a valid admin Connect; bits
// 2-3: digests asked in that ICReq. Bytes are fed in pieces of the split byte's size, so every
// split of the stream is explored. io_fuzz.cc starts from established queues instead.
#include <cstdint>
#include <vector>

#include "fuzz_host.hh"

using ferry::fuzz::session;
using ferry::fuzz::world;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static world w;
    ferry::fuzz::input in;
    if (!ferry::fuzz::parse_input(data, size, in)) return 0;
    const uint8_t flags = in.flags;
    const size_t split = in.split;
    data = in.stream;
    size = in.stream_size;
    const bool hd = in.header_digest(), dd = in.data_digest();

    std::vector<uint8_t> stream;
    if (flags & 1) {
        ferry::fuzz::append_ic_req(stream, hd, dd);
        if (flags & 2) ferry::fuzz::append_connect(stream, 0, 0xFFFF, hd, dd);
    }
    stream.insert(stream.end(), data, data + size);
    session s(w, 1);
    if (s.conn) s.feed(stream.data(), stream.size(), split);
    return 0;
}
