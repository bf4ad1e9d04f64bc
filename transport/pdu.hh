// NVMe/TCP PDU layouts and header validation (reference section 1). Pure functions: no
// sockets, so the decoder can be unit tested and fuzzed on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "nvme/spec.hh"

namespace ferry::transport {

namespace pdu_type {
inline constexpr uint8_t ic_req = 0x00, ic_resp = 0x01, h2c_term_req = 0x02, c2h_term_req = 0x03,
                         capsule_cmd = 0x04, capsule_resp = 0x05, h2c_data = 0x06, c2h_data = 0x07, r2t = 0x09;
}
namespace pdu_flag {
inline constexpr uint8_t hdgst = 0x01, ddgst = 0x02, last_pdu = 0x04, success = 0x08;
}
// Fatal error status for C2HTermReq (reference 1.7).
namespace fes {
inline constexpr uint16_t invalid_header_field = 0x01, sequence_error = 0x02, header_digest = 0x03,
                          data_out_of_range = 0x04, data_limit_exceeded = 0x05, unsupported_parameter = 0x06;
}

struct common_header {
    uint8_t type;
    uint8_t flags;
    uint8_t hlen;
    uint8_t pdo;
    uint32_t plen;
} __attribute__((packed));
static_assert(sizeof(common_header) == 8);

struct ic_req_pdu {
    common_header ch;
    uint16_t pfv;
    uint8_t hpda;
    uint8_t digest;  // bit 0 header, bit 1 data
    uint32_t maxr2t;
    uint8_t reserved[112];
} __attribute__((packed));
static_assert(sizeof(ic_req_pdu) == 128);

struct ic_resp_pdu {
    common_header ch;
    uint16_t pfv;
    uint8_t cpda;
    uint8_t digest;
    uint32_t maxh2cdata;
    uint8_t reserved[112];
} __attribute__((packed));
static_assert(sizeof(ic_resp_pdu) == 128);

struct capsule_cmd_pdu {
    common_header ch;
    nvme::sqe cmd;
} __attribute__((packed));
static_assert(sizeof(capsule_cmd_pdu) == 72);

struct capsule_resp_pdu {
    common_header ch;
    nvme::cqe cpl;
} __attribute__((packed));
static_assert(sizeof(capsule_resp_pdu) == 24);

// H2CData, C2HData and R2T share one layout (TTAG is reserved in C2HData).
struct data_pdu {
    common_header ch;
    uint16_t cccid;
    uint16_t ttag;
    uint32_t offset;  // DATAO / R2TO
    uint32_t length;  // DATAL / R2TL
    uint32_t reserved;
} __attribute__((packed));
static_assert(sizeof(data_pdu) == 24);

struct term_req_pdu {
    common_header ch;
    uint16_t fes;
    uint32_t fei;
    uint8_t reserved[10];
} __attribute__((packed));
static_assert(sizeof(term_req_pdu) == 24);
inline constexpr size_t term_req_max_error_data = 128;

inline constexpr size_t max_header_len = 128;  // ICReq is the largest header

// Digests negotiated for a connection.
struct digests {
    bool header = false;
    bool data = false;
};

// What the receiver learns from a PDU's common header, before reading the rest of it.
struct header_check {
    uint16_t fes = 0;  // 0 = acceptable; else the fatal error status to send
    uint32_t fei = 0;  // byte offset of the bad field for invalid_header_field
    size_t header_bytes = 0;  // bytes to read for the header, including HDGST
    size_t pad_bytes = 0;     // between header (+HDGST) and data
    size_t data_bytes = 0;    // payload, excluding DDGST
    bool has_ddgst = false;
};

// Validates a host-to-controller common header: type legal for the connection state,
// HLEN as in the table, PLEN/PDO consistent, digest flags as negotiated.
// `ic_done` is false until the ICReq was accepted.
header_check check_h2c_header(const common_header& ch, bool ic_done, digests dg);

// CRC32C as NVMe/TCP uses it (init ~0, final xor ~0; ISA-L).
uint32_t crc32c(const void* data, size_t len);
// Continues a running digest: start with crc32c_begin(), feed, then crc32c_end().
inline constexpr uint32_t crc32c_begin() { return 0xFFFFFFFFu; }
uint32_t crc32c_update(uint32_t state, const void* data, size_t len);
inline constexpr uint32_t crc32c_end(uint32_t state) { return ~state; }

// Fills the common header of a PDU this controller sends.
inline void fill_header(common_header& ch, uint8_t type, uint8_t flags, uint8_t hlen, uint8_t pdo, uint32_t plen) {
    ch.type = type;
    ch.flags = flags;
    ch.hlen = hlen;
    ch.pdo = pdo;
    ch.plen = plen;
}

}  // namespace ferry::transport
