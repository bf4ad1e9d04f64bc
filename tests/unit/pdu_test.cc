#include <gtest/gtest.h>

#include "transport/pdu.hh"

using namespace ferry::transport;

namespace {
common_header ch(uint8_t type, uint8_t flags, uint8_t hlen, uint8_t pdo, uint32_t plen) {
    common_header h;
    fill_header(h, type, flags, hlen, pdo, plen);
    return h;
}
}  // namespace

TEST(crc32c, check_value) { EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u); }

TEST(crc32c, chained_equals_whole) {
    const char* s = "hello nvme over tcp";
    uint32_t st = crc32c_begin();
    st = crc32c_update(st, s, 5);
    st = crc32c_update(st, s + 5, std::strlen(s) - 5);
    EXPECT_EQ(crc32c_end(st), crc32c(s, std::strlen(s)));
}

TEST(header_check, icreq_must_come_first) {
    auto r = check_h2c_header(ch(pdu_type::capsule_cmd, 0, 72, 0, 72), false, {});
    EXPECT_EQ(r.fes, fes::sequence_error);
    r = check_h2c_header(ch(pdu_type::ic_req, 0, 128, 0, 128), false, {});
    EXPECT_EQ(r.fes, 0);
    EXPECT_EQ(r.header_bytes, 128u);
}

TEST(header_check, icreq_bad_lengths) {
    auto r = check_h2c_header(ch(pdu_type::ic_req, 0, 127, 0, 128), false, {});
    EXPECT_EQ(r.fes, fes::invalid_header_field);
    EXPECT_EQ(r.fei, 2u);
    r = check_h2c_header(ch(pdu_type::ic_req, 0, 128, 0, 4096), false, {});
    EXPECT_EQ(r.fes, fes::invalid_header_field);
    EXPECT_EQ(r.fei, 4u);
}

TEST(header_check, second_icreq_is_a_sequence_error) {
    EXPECT_EQ(check_h2c_header(ch(pdu_type::ic_req, 0, 128, 0, 128), true, {}).fes, fes::sequence_error);
}

TEST(header_check, capsule_without_data) {
    auto r = check_h2c_header(ch(pdu_type::capsule_cmd, 0, 72, 0, 72), true, {});
    EXPECT_EQ(r.fes, 0);
    EXPECT_EQ(r.header_bytes, 72u);
    EXPECT_EQ(r.data_bytes, 0u);
}

TEST(header_check, capsule_with_data_and_digests) {
    digests dg{true, true};
    auto r = check_h2c_header(ch(pdu_type::capsule_cmd, pdu_flag::hdgst | pdu_flag::ddgst, 72, 76, 76 + 4096 + 4), true, dg);
    EXPECT_EQ(r.fes, 0);
    EXPECT_EQ(r.header_bytes, 76u);
    EXPECT_EQ(r.data_bytes, 4096u);
    EXPECT_TRUE(r.has_ddgst);
}

TEST(header_check, digest_flags_must_match_negotiation) {
    digests dg{true, false};
    EXPECT_EQ(check_h2c_header(ch(pdu_type::capsule_cmd, 0, 72, 0, 76), true, dg).fes, fes::invalid_header_field);
    EXPECT_EQ(check_h2c_header(ch(pdu_type::capsule_cmd, pdu_flag::hdgst, 72, 0, 72), true, {}).fes,
              fes::invalid_header_field);
    // data digest negotiated but missing on a PDU with data
    digests dd{false, true};
    EXPECT_EQ(check_h2c_header(ch(pdu_type::h2c_data, 0, 24, 24, 24 + 512), true, dd).fes, fes::invalid_header_field);
}

TEST(header_check, wrong_hlen_names_the_field) {
    auto r = check_h2c_header(ch(pdu_type::capsule_cmd, 0, 24, 0, 72), true, {});
    EXPECT_EQ(r.fes, fes::invalid_header_field);
    EXPECT_EQ(r.fei, 2u);
}

TEST(header_check, pdo_and_plen_consistency) {
    // PDO inside the header
    EXPECT_EQ(check_h2c_header(ch(pdu_type::h2c_data, 0, 24, 16, 600), true, {}).fes, fes::invalid_header_field);
    // PDO not dword aligned
    EXPECT_EQ(check_h2c_header(ch(pdu_type::h2c_data, 0, 24, 26, 600), true, {}).fes, fes::invalid_header_field);
    // PLEN shorter than the header
    EXPECT_EQ(check_h2c_header(ch(pdu_type::capsule_cmd, 0, 72, 0, 40), true, {}).fes, fes::invalid_header_field);
    // PLEN beyond header but PDO 0
    EXPECT_EQ(check_h2c_header(ch(pdu_type::capsule_cmd, 0, 72, 0, 100), true, {}).fes, fes::invalid_header_field);
    // padding allowed (CPDA 0 means any dword-aligned offset after the header)
    auto r = check_h2c_header(ch(pdu_type::h2c_data, 0, 24, 32, 32 + 100), true, {});
    EXPECT_EQ(r.fes, 0);
    EXPECT_EQ(r.pad_bytes, 8u);
    EXPECT_EQ(r.data_bytes, 100u);
}

TEST(header_check, controller_to_host_types_are_rejected) {
    for (uint8_t t : {pdu_type::ic_resp, pdu_type::c2h_term_req, pdu_type::capsule_resp, pdu_type::c2h_data,
                      pdu_type::r2t, uint8_t(0x08), uint8_t(0xFF)}) {
        auto r = check_h2c_header(ch(t, 0, 24, 0, 24), true, {});
        EXPECT_EQ(r.fes, fes::invalid_header_field) << int(t);
        EXPECT_EQ(r.fei, 0u);
    }
}

TEST(header_check, term_req_lengths) {
    EXPECT_EQ(check_h2c_header(ch(pdu_type::h2c_term_req, 0, 24, 0, 24 + 72), true, {}).fes, 0);
    EXPECT_EQ(check_h2c_header(ch(pdu_type::h2c_term_req, 0, 24, 0, 24 + 200), true, {}).fes, fes::invalid_header_field);
}

TEST(header_check, unknown_flags_rejected) {
    EXPECT_EQ(check_h2c_header(ch(pdu_type::capsule_cmd, 0x80, 72, 0, 72), true, {}).fes, fes::invalid_header_field);
    EXPECT_EQ(check_h2c_header(ch(pdu_type::capsule_cmd, pdu_flag::last_pdu, 72, 0, 72), true, {}).fes,
              fes::invalid_header_field);
}
