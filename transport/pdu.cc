#include "transport/pdu.hh"

#include <isa-l/crc.h>

namespace ferry::transport {

uint32_t crc32c_update(uint32_t state, const void* data, size_t len) {
    // ISA-L's crc32_iscsi neither pre- nor post-inverts: it continues from `state`.
    return crc32_iscsi(static_cast<unsigned char*>(const_cast<void*>(data)), static_cast<int>(len), state);
}

uint32_t crc32c(const void* data, size_t len) { return crc32c_end(crc32c_update(crc32c_begin(), data, len)); }

header_check check_h2c_header(const common_header& ch, bool ic_done, digests dg) {
    header_check r;
    auto invalid = [&](uint32_t field_offset) {
        r.fes = fes::invalid_header_field;
        r.fei = field_offset;
        return r;
    };
    constexpr uint32_t off_type = 0, off_flags = 1, off_hlen = 2, off_pdo = 3, off_plen = 4;

    if (!ic_done) {
        if (ch.type != pdu_type::ic_req) {
            r.fes = fes::sequence_error;
            return r;
        }
        if (ch.hlen != sizeof(ic_req_pdu)) return invalid(off_hlen);
        if (ch.plen != sizeof(ic_req_pdu)) return invalid(off_plen);
        if (ch.pdo != 0) return invalid(off_pdo);
        if (ch.flags != 0) return invalid(off_flags);
        r.header_bytes = sizeof(ic_req_pdu);
        return r;
    }

    size_t hlen = 0;
    bool may_have_data = false;
    switch (ch.type) {
    case pdu_type::capsule_cmd:
        hlen = sizeof(capsule_cmd_pdu);
        may_have_data = true;
        break;
    case pdu_type::h2c_data:
        hlen = sizeof(data_pdu);
        may_have_data = true;
        break;
    case pdu_type::h2c_term_req:
        if (ch.hlen != sizeof(term_req_pdu)) return invalid(off_hlen);
        if (ch.plen < sizeof(term_req_pdu) || ch.plen > sizeof(term_req_pdu) + term_req_max_error_data)
            return invalid(off_plen);
        r.header_bytes = sizeof(term_req_pdu);
        r.data_bytes = ch.plen - sizeof(term_req_pdu);
        return r;
    case pdu_type::ic_req:
        r.fes = fes::sequence_error;  // a second ICReq
        return r;
    default:
        return invalid(off_type);
    }
    if (ch.hlen != hlen) return invalid(off_hlen);
    const uint8_t allowed = pdu_flag::hdgst | pdu_flag::ddgst | (ch.type == pdu_type::h2c_data ? pdu_flag::last_pdu : 0);
    if (ch.flags & ~allowed) return invalid(off_flags);
    if (bool(ch.flags & pdu_flag::hdgst) != dg.header) return invalid(off_flags);

    const size_t hdgst = dg.header ? 4 : 0;
    r.header_bytes = hlen + hdgst;
    if (ch.plen < r.header_bytes) return invalid(off_plen);

    if (ch.pdo == 0 || ch.plen == r.header_bytes) {
        // No data. A data digest flag without data is meaningless.
        if (ch.pdo != 0 || ch.plen != r.header_bytes || (ch.flags & pdu_flag::ddgst))
            return ch.plen != r.header_bytes ? invalid(off_plen) : invalid(ch.pdo ? off_pdo : off_flags);
        return r;
    }
    if (!may_have_data) return invalid(off_pdo);
    if (bool(ch.flags & pdu_flag::ddgst) != dg.data) return invalid(off_flags);
    // CPDA is 0: data may start anywhere at or after the header (dword aligned), at most 128 bytes in.
    if (ch.pdo < r.header_bytes || (ch.pdo & 3) || ch.pdo > r.header_bytes + 128) return invalid(off_pdo);
    const size_t ddgst = dg.data ? 4 : 0;
    if (ch.plen < size_t(ch.pdo) + ddgst + 1) return invalid(off_plen);
    r.pad_bytes = ch.pdo - r.header_bytes;
    r.data_bytes = ch.plen - ch.pdo - ddgst;
    r.has_ddgst = dg.data;
    return r;
}

}  // namespace ferry::transport
