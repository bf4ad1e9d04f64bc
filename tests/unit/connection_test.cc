// The NVMe/TCP connection state machine, through the real target, over a socketpair.
#include <gtest/gtest.h>

#include "test_host.hh"

using namespace ferry;
using namespace ferry::test;
namespace tp = ferry::transport;

TEST(connection, icresp_echoes_digests_and_limits) {
    for (int mode = 0; mode < 4; ++mode) {
        harness h;
        host_conn c(h, mode & 1, mode & 2);
        auto r = c.icreq();
        EXPECT_EQ(r.ch.type, tp::pdu_type::ic_resp);
        EXPECT_EQ(r.ch.hlen, 128);
        EXPECT_EQ(r.ch.plen, 128u);
        EXPECT_EQ(r.pfv, 0);
        EXPECT_EQ(r.cpda, 0);
        EXPECT_EQ(r.digest, mode);
        EXPECT_EQ(r.maxh2cdata, tp::max_transfer_bytes);  // a whole transfer: one R2T, one H2CData may carry it
        EXPECT_EQ(c.conn->negotiated_digests().header, bool(mode & 1));
        EXPECT_EQ(c.conn->negotiated_digests().data, bool(mode & 2));
    }
}

TEST(connection, capsule_before_icreq_terminates_with_sequence_error) {
    harness h;
    host_conn c(h);
    tp::capsule_cmd_pdu p{};
    tp::fill_header(p.ch, tp::pdu_type::capsule_cmd, 0, 72, 0, 72);
    c.send_raw(&p, sizeof(p));
    auto t = c.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, tp::fes::sequence_error);
    EXPECT_TRUE(c.target_closed());
    EXPECT_TRUE(c.conn->closing());
}

TEST(connection, icreq_with_unsupported_pfv_or_hpda) {
    for (int field = 0; field < 2; ++field) {
        harness h;
        host_conn c(h);
        tp::ic_req_pdu req{};
        tp::fill_header(req.ch, tp::pdu_type::ic_req, 0, 128, 0, 128);
        if (field == 0) req.pfv = 1;
        else req.hpda = 3;
        c.send_raw(&req, sizeof(req));
        auto t = c.expect_term();
        ASSERT_TRUE(t);
        EXPECT_EQ(t->fes, tp::fes::unsupported_parameter);
        EXPECT_EQ(t->fei, field == 0 ? 8u : 10u);
    }
}

TEST(connection, bad_hlen_names_the_field) {
    harness h;
    host_conn c(h);
    c.icreq();
    tp::capsule_cmd_pdu p{};
    tp::fill_header(p.ch, tp::pdu_type::capsule_cmd, 0, 70, 0, 72);
    c.send_raw(&p, sizeof(p));
    auto t = c.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, tp::fes::invalid_header_field);
    EXPECT_EQ(t->fei, 2u);
}

TEST(connection, header_digest_error_is_fatal) {
    harness h;
    host_conn c(h, true, false);
    c.icreq();
    std::vector<uint8_t> pdu(76);
    auto* p = reinterpret_cast<tp::capsule_cmd_pdu*>(pdu.data());
    tp::fill_header(p->ch, tp::pdu_type::capsule_cmd, tp::pdu_flag::hdgst, 72, 0, 76);
    p->cmd.opcode = nvme::admin_opc::keep_alive;
    uint32_t bad = tp::crc32c(pdu.data(), 72) ^ 1;
    std::memcpy(pdu.data() + 72, &bad, 4);
    c.send_raw(pdu.data(), pdu.size());
    auto t = c.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, tp::fes::header_digest);
}

TEST(connection, oversized_in_capsule_data_is_refused) {
    harness h;
    host_conn c(h);
    c.icreq();
    const size_t n = tp::in_capsule_bytes + 4096;
    std::vector<uint8_t> pdu(72 + n);
    auto* p = reinterpret_cast<tp::capsule_cmd_pdu*>(pdu.data());
    tp::fill_header(p->ch, tp::pdu_type::capsule_cmd, 0, 72, 72, static_cast<uint32_t>(pdu.size()));
    p->cmd.opcode = nvme::io_opc::write;
    p->cmd.sgl.type = nvme::sgl_data_block_offset;
    p->cmd.sgl.length = static_cast<uint32_t>(n);
    c.send_raw(pdu.data(), pdu.size());
    auto t = c.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, tp::fes::data_limit_exceeded);
}

TEST(connection, command_before_connect_gets_sequence_error) {
    harness h;
    host_conn c(h);
    c.icreq();
    auto r = c.cmd(c.make(nvme::admin_opc::keep_alive));
    EXPECT_EQ(r.status, nvme::sc::command_sequence_error | nvme::status_dnr);
    EXPECT_FALSE(c.conn->closing());
}

TEST(connection, no_icreq_within_timeout_closes) {
    harness h;
    host_conn c(h);
    c.conn->on_timer(env::now_ns() + tp::icreq_timeout_ns + 1'000'000);
    EXPECT_TRUE(c.conn->closing());
    EXPECT_TRUE(c.target_closed());
}

TEST(connection, host_term_req_closes_quietly) {
    harness h;
    host_conn c(h);
    c.icreq();
    std::vector<uint8_t> pdu(24 + 8);
    auto* t = reinterpret_cast<tp::term_req_pdu*>(pdu.data());
    tp::fill_header(t->ch, tp::pdu_type::h2c_term_req, 0, 24, 0, 32);
    t->fes = tp::fes::sequence_error;
    c.send_raw(pdu.data(), pdu.size());
    EXPECT_TRUE(c.conn->closing());
    EXPECT_TRUE(c.target_closed());
}

TEST(connection, host_term_req_with_a_bad_header_is_not_answered) {
    // PLEN beyond the largest H2CTermReq, and HLEN wrong: the target closes without a C2HTermReq.
    for (int field = 0; field < 2; ++field) {
        harness h;
        host_conn c(h);
        c.icreq();
        std::vector<uint8_t> pdu(24 + tp::term_req_max_error_data + 8);
        auto* t = reinterpret_cast<tp::term_req_pdu*>(pdu.data());
        if (field == 0)
            tp::fill_header(t->ch, tp::pdu_type::h2c_term_req, 0, 24, 0, static_cast<uint32_t>(pdu.size()));
        else
            tp::fill_header(t->ch, tp::pdu_type::h2c_term_req, 0, 28, 0, 32);
        t->fes = tp::fes::sequence_error;
        c.send_raw(pdu.data(), field == 0 ? pdu.size() : 32);
        EXPECT_TRUE(c.conn->closing());
        EXPECT_FALSE(c.expect_term()) << "field " << field;  // EOF, no C2HTermReq
    }
}

TEST(connection, bytes_arriving_one_at_a_time) {
    // The decoder must not depend on how the stream is split.
    harness h;
    host_conn c(h);
    tp::ic_req_pdu req{};
    tp::fill_header(req.ch, tp::pdu_type::ic_req, 0, 128, 0, 128);
    auto* b = reinterpret_cast<const uint8_t*>(&req);
    for (size_t i = 0; i < sizeof(req); ++i) c.send_raw(b + i, 1);
    tp::ic_resp_pdu resp{};
    ASSERT_TRUE(c.recv_exact(&resp, sizeof(resp)));
    EXPECT_EQ(resp.ch.type, tp::pdu_type::ic_resp);
}

namespace {
// A target of its own with one association (I/O queue depth 128).
struct io_pair {
    harness h;
    association a;
    host_conn& io = a.io;
    io_pair(bool hd = false, bool dd = false, uint8_t cattr = 0) : a(h, 5000, 127, hd, dd, cattr) {}
};
}  // namespace

// NVMe over Fabrics carries data by SGL only: PSDT (SQE byte 1 bits 7:6) must be 01b. Any other
// value is Invalid Field + DNR before the command is parsed (nvmet_req_init), Connect included,
// after in-capsule data is consumed, and before an R2T or buffers for a write.
TEST(connection, commands_without_sgl_psdt_are_refused) {
    io_pair q;
    host_conn& io = q.io;
    const uint64_t granted = q.h.buffers.chunks_granted();
    for (const uint8_t psdt : {0x00, 0x80, 0xC0}) {
        io.psdt = psdt;
        auto w = io.rw(nvme::io_opc::write, 1, 0, 16);
        io.send_capsule(w, {}, false, 65536);
        auto r = io.wait(w.cid, pattern(65536, 1));
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, nvme::sc::invalid_field | nvme::status_dnr) << +psdt;
        const auto in_capsule = io.cmd(io.rw(nvme::io_opc::write, 1, 0, 1), pattern(4096, 2), 0, true);
        EXPECT_EQ(in_capsule.status, nvme::sc::invalid_field | nvme::status_dnr) << +psdt;
        EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 0, 1), {}, 4096).status,
                  nvme::sc::invalid_field | nvme::status_dnr)
            << +psdt;
        EXPECT_EQ(io.cmd(io.make(nvme::io_opc::flush, 1)).status, nvme::sc::invalid_field | nvme::status_dnr) << +psdt;
    }
    EXPECT_TRUE(io.r2ts.empty());
    EXPECT_EQ(q.h.buffers.chunks_granted(), granted);
    // The queue is intact: the same write with PSDT 01b is carried out and reads back.
    io.psdt = nvme::psdt_sgl_contiguous;
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 0, 16), pattern(65536, 3), 0, false).status, 0);
    auto back = io.cmd(io.rw(nvme::io_opc::read, 1, 0, 16), {}, 65536);
    EXPECT_EQ(back.status, 0);
    EXPECT_EQ(back.data, pattern(65536, 3));

    // A Connect with PSDT 00b makes no controller.
    harness h;
    host_conn c(h);
    c.icreq();
    c.psdt = 0;
    EXPECT_EQ(c.connect(open_nqn, host_a, 0, 0xFFFF).status, nvme::sc::invalid_field | nvme::status_dnr);
    c.psdt = nvme::psdt_sgl_contiguous;
    EXPECT_EQ(c.property_get(nvme::reg::cap, true).status, nvme::sc::command_sequence_error | nvme::status_dnr);
    EXPECT_EQ(c.connect(open_nqn, host_a, 0, 0xFFFF).status, 0);
}

TEST(connection, r2t_write_then_read_with_digests) {
    for (int mode = 0; mode < 4; ++mode) {
        io_pair q(mode & 1, mode & 2);
        q.io.max_h2c = 32768;  // several H2CData PDUs for one R2T
        auto data = pattern(128 * 1024, mode);
        auto w = q.io.cmd(q.io.rw(nvme::io_opc::write, 1, 64, 32), data, 0, false);
        EXPECT_EQ(w.status, 0);
        ASSERT_EQ(q.io.r2ts.size(), 1u);
        EXPECT_EQ(q.io.r2ts[0].length, data.size());
        EXPECT_EQ(q.io.r2ts[0].offset, 0u);
        auto r = q.io.cmd(q.io.rw(nvme::io_opc::read, 1, 64, 32), {}, static_cast<uint32_t>(data.size()));
        EXPECT_EQ(r.status, 0);
        EXPECT_TRUE(r.got_resp);
        EXPECT_TRUE(r.last_c2h_flags & tp::pdu_flag::last_pdu);
        EXPECT_FALSE(r.last_c2h_flags & tp::pdu_flag::success);
        EXPECT_EQ(r.data, data);
    }
}

TEST(connection, data_digest_error_fails_the_command_not_the_connection) {
    io_pair q(false, true);
    auto data = pattern(16384, 9);
    auto c = q.io.rw(nvme::io_opc::write, 1, 0, 4);
    q.io.send_capsule(c, data, false, static_cast<uint32_t>(data.size()));
    auto r = q.io.wait(c.cid, data, /*corrupt_h2c_ddgst=*/true);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, nvme::sc::transient_transport_error);
    EXPECT_FALSE(q.io.conn->closing());
    // The blocks were not written: they still read as zeroes.
    auto rd = q.io.cmd(q.io.rw(nvme::io_opc::read, 1, 0, 4), {}, 16384);
    EXPECT_EQ(rd.status, 0);
    EXPECT_TRUE(std::all_of(rd.data.begin(), rd.data.end(), [](uint8_t x) { return x == 0; }));
}

TEST(connection, h2c_with_unknown_ttag_is_fatal) {
    io_pair q;
    auto data = pattern(4096, 1);
    q.io.send_h2c(77, 99, 0, data.data(), 4096, true);
    auto t = q.io.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, tp::fes::invalid_header_field);
    EXPECT_EQ(t->fei, 10u);  // TTAG
}

TEST(connection, h2c_outside_the_r2t_window_is_fatal) {
    io_pair q;
    auto data = pattern(65536, 2);
    auto c = q.io.rw(nvme::io_opc::write, 1, 0, 16);
    q.io.send_capsule(c, data, false, 65536);
    tp::data_pdu r2t{};
    ASSERT_TRUE(q.io.recv_exact(&r2t, sizeof(r2t)));
    ASSERT_EQ(r2t.ch.type, tp::pdu_type::r2t);
    q.io.send_h2c(c.cid, r2t.ttag, 4096, data.data(), 4096, false);  // skips offset 0
    auto t = q.io.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, tp::fes::data_out_of_range);
}

// Older Linux hosts answer an R2T with one H2CData PDU of its whole length, whatever
// MAXH2CDATA: a 1 MiB write's data in one PDU is accepted (MAXH2CDATA is a whole transfer).
TEST(connection, whole_r2t_in_one_h2c_data_pdu) {
    io_pair q;
    auto data = pattern(1u << 20, 3);
    auto c = q.io.rw(nvme::io_opc::write, 1, 0, static_cast<uint32_t>(data.size() / 4096));
    q.io.send_capsule(c, data, false, static_cast<uint32_t>(data.size()));
    tp::data_pdu r2t{};
    ASSERT_TRUE(q.io.recv_exact(&r2t, sizeof(r2t)));
    ASSERT_EQ(r2t.length, data.size());
    q.io.send_h2c(c.cid, r2t.ttag, 0, data.data(), static_cast<uint32_t>(data.size()), true);
    auto w = q.io.wait(c.cid);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->status, 0);
    EXPECT_EQ(q.io.cmd(q.io.rw(nvme::io_opc::read, 1, 0, 256), {}, 1u << 20).data, data);
}

// DATAL beyond MAXH2CDATA: Data Transfer Limit Exceeded on the header alone.
TEST(connection, h2c_larger_than_maxh2cdata_is_fatal) {
    io_pair q;
    const uint32_t len = tp::max_transfer_bytes;
    auto c = q.io.rw(nvme::io_opc::write, 1, 0, len / 4096);
    q.io.send_capsule(c, {}, false, len);
    tp::data_pdu r2t{};
    ASSERT_TRUE(q.io.recv_exact(&r2t, sizeof(r2t)));
    tp::data_pdu h{};
    tp::fill_header(h.ch, tp::pdu_type::h2c_data, tp::pdu_flag::last_pdu, sizeof(h), sizeof(h),
                    static_cast<uint32_t>(sizeof(h) + tp::maxh2cdata_bytes + 4096));
    h.cccid = c.cid;
    h.ttag = r2t.ttag;
    h.length = tp::maxh2cdata_bytes + 4096;
    q.io.send_raw(&h, sizeof(h));
    auto t = q.io.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, tp::fes::data_limit_exceeded);
}

// A header refused on its first 8 bytes: the C2HTermReq's copy of it holds those bytes and
// zeroes, not what the previous PDU left in the receive buffer.
TEST(connection, term_req_copies_only_the_header_bytes_received) {
    io_pair q;
    ASSERT_EQ(q.io.cmd(q.io.rw(nvme::io_opc::write, 1, 0, 1), pattern(4096, 5)).status, 0);  // a 72-byte header
    const uint8_t bad[8] = {tp::pdu_type::capsule_cmd, 0, 0x48, 0x01, 0x48, 0, 0, 0};  // HLEN 72, PDO 1
    q.io.send_raw(bad, sizeof(bad));
    tp::term_req_pdu t{};
    ASSERT_TRUE(q.io.recv_exact(&t, sizeof(t)));
    ASSERT_EQ(t.ch.type, tp::pdu_type::c2h_term_req);
    ASSERT_EQ(t.ch.plen, sizeof(t) + 72);
    std::vector<uint8_t> copy(72);
    ASSERT_TRUE(q.io.recv_exact(copy.data(), copy.size()));
    EXPECT_TRUE(std::equal(bad, bad + 8, copy.begin()));
    EXPECT_TRUE(std::all_of(copy.begin() + 8, copy.end(), [](uint8_t b) { return b == 0; }));
}

namespace {
// A 4 KiB write then read on `io`: the read must end with C2HData SUCCESS|LAST and no
// CapsuleResp. Returns a failing read's answer, which must have a CapsuleResp.
response read_ends_with_success_but_a_failure_does_not(host_conn& io, uint32_t seed) {
    auto data = pattern(4096, seed);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 3, 1), data).status, 0);
    auto r = io.cmd(io.rw(nvme::io_opc::read, 1, 3, 1), {}, 4096);
    EXPECT_FALSE(r.got_resp);
    EXPECT_EQ(r.last_c2h_flags & (tp::pdu_flag::success | tp::pdu_flag::last_pdu),
              tp::pdu_flag::success | tp::pdu_flag::last_pdu);
    EXPECT_EQ(r.data, data);
    auto bad = io.cmd(io.rw(nvme::io_opc::read, 1, 1u << 30, 1), {}, 4096);
    EXPECT_TRUE(bad.got_resp);
    EXPECT_EQ(bad.status, nvme::sc::lba_out_of_range | nvme::status_dnr);
    return bad;
}
}  // namespace

TEST(connection, success_optimisation_only_with_sq_flow_control_disabled) {
    io_pair q(false, false, nvme::cattr_disable_sqflow);
    EXPECT_EQ(read_ends_with_success_but_a_failure_does_not(q.io, 4).cqe.sqhd, 0xFFFF);
}

TEST(connection, sqhd_advances_and_sqid_is_the_queue) {
    io_pair q;
    auto a = q.io.cmd(q.io.rw(nvme::io_opc::flush, 1, 0, 1));
    auto b = q.io.cmd(q.io.rw(nvme::io_opc::flush, 1, 0, 1));
    EXPECT_EQ(a.cqe.sqid, 1);
    EXPECT_EQ(uint16_t(b.cqe.sqhd), uint16_t((a.cqe.sqhd + 1) % 128));
}

// The head counts the Connect and wraps at the queue size, here 3 (not a power of two).
TEST(connection, sqhd_wraps_at_a_queue_size_that_is_not_a_power_of_two) {
    harness h;
    host_conn admin(h), io(h);
    const uint16_t cntlid = admin.bring_up_admin(open_nqn, host_a);
    io.icreq();
    auto c = io.connect(open_nqn, host_a, 1, cntlid, 2);
    ASSERT_EQ(c.status, 0);
    EXPECT_EQ(c.cqe.sqhd, 1);
    for (uint16_t want : {2, 0, 1, 2, 0}) EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::flush, 1, 0, 1)).cqe.sqhd, want);
}

TEST(connection, exceeding_the_queue_depth_is_fatal) {
    // Writes waiting for their H2C data hold their slots. A queue of depth 4 has 4 slots plus
    // one spare; a sixth outstanding command is a protocol violation.
    harness h;
    association a(h, 5000, 3);
    host_conn& io = a.io;
    for (int i = 0; i < 5; ++i) {
        io.send_capsule(io.rw(nvme::io_opc::write, 1, i * 4, 4), {}, false, 16384);
        tp::data_pdu r2t{};
        ASSERT_TRUE(io.recv_exact(&r2t, sizeof(r2t)));
        ASSERT_EQ(r2t.ch.type, tp::pdu_type::r2t);
    }
    EXPECT_FALSE(io.conn->closing());
    io.send_capsule(io.rw(nvme::io_opc::write, 1, 40, 4), {}, false, 16384);
    auto t = io.expect_term();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->fes, tp::fes::sequence_error);
}

TEST(connection, large_transfers_wait_for_buffers_instead_of_failing) {
    // A pool too small for two 1 MiB reads at once: the second waits, then completes.
    target::target_config cfg = test_config();
    harness h(cfg, (1u << 20) + 64 * 8192 + 8 * 8192);
    association a(h, 5000, 15);
    host_conn& io = a.io;
    auto w = pattern(1u << 20, 5);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 0, 256), w, 0, false).status, 0);
    auto c1 = io.rw(nvme::io_opc::read, 1, 0, 256);
    auto c2 = io.rw(nvme::io_opc::read, 1, 0, 256);
    io.send_capsule(c1, {}, true, 1u << 20);
    io.send_capsule(c2, {}, true, 1u << 20);
    // The first holds its chunks until its data is sent; the second waited for them.
    EXPECT_EQ(h.buffers.waits(), 1u);
    auto r1 = io.wait(c1.cid);
    auto r2 = io.wait(c2.cid);
    ASSERT_TRUE(r1 && r2);
    EXPECT_EQ(r1->data, w);
    EXPECT_EQ(r2->data, w);
    EXPECT_EQ(h.buffers.waits(), 1u);
    EXPECT_EQ(h.buffers.waiting_in_fifo(), 0u);
}

TEST(connection, a_transfer_the_unreserved_pool_cannot_hold_is_refused_not_queued) {
    // 1100 chunks, 162 reserved by queue entries (admin 33, I/O depth 128 + 1): 938 left, fewer
    // than the 1024 of an 8 MiB transfer. Waiting would hold the reactor's FIFO for as long as
    // these queues exist; the command gets Internal Error (no DNR: closing queues frees chunks).
    harness h(test_config(), 1100 * 8192, /*connection_chunks=*/1024);
    association a(h, 5000, 127);
    host_conn& io = a.io;
    ASSERT_EQ(h.buffers.unreserved_chunks(), 1100u - 162u);
    const uint32_t big = 8u << 20;
    auto rd = io.rw(nvme::io_opc::read, 1, 0, big / 4096);
    io.send_capsule(rd, {}, true, big);
    auto r = io.wait(rd.cid);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, nvme::sc::internal_error);
    EXPECT_EQ(h.buffers.waiting_in_fifo(), 0u);
    auto wr = io.rw(nvme::io_opc::write, 1, 0, big / 4096);
    io.send_capsule(wr, {}, false, big);
    r = io.wait(wr.cid, pattern(big, 8));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, nvme::sc::internal_error);
    EXPECT_TRUE(io.r2ts.empty());
    // What fits the unreserved chunks still goes through.
    auto w = pattern(1u << 20, 9);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 0, 256), w, 0, false).status, 0);
    auto back = io.rw(nvme::io_opc::read, 1, 0, 256);
    io.send_capsule(back, {}, true, 1u << 20);
    r = io.wait(back.cid);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->data, w);

    // With 1200 chunks (1038 unreserved) the same 8 MiB read is served.
    harness roomy(test_config(), 1200 * 8192, 1024);
    association b(roomy, 5000, 127);
    auto rd2 = b.io.rw(nvme::io_opc::read, 1, 0, big / 4096);
    b.io.send_capsule(rd2, {}, true, big);
    r = b.io.wait(rd2.cid);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 0);
    EXPECT_EQ(r->data.size(), big);
}

TEST(connection, buffer_waiters_are_served_in_arrival_order_across_connections) {
    // Reserved chunks: admin 33, two I/O queues of depth 128 with 129 each; 200 chunks spare.
    harness h(test_config(), (33 + 129 + 129 + 200) * 8192, /*connection_chunks=*/1024);
    association a(h, 5000, 127);
    host_conn& x = a.io;
    host_conn y(h);
    y.icreq();
    ASSERT_EQ(y.connect(open_nqn, host_a, 2, a.cntlid, 127, 0).status, 0);
    auto w = pattern(1u << 20, 6);
    EXPECT_EQ(x.cmd(x.rw(nvme::io_opc::write, 1, 0, 256), w, 0, false).status, 0);
    ASSERT_EQ(h.pool.free_chunks(), 200u);
    // y's 1 MiB read holds 128 chunks until the host reads its data: 72 left.
    auto big_y = y.rw(nvme::io_opc::read, 1, 0, 256);
    y.send_capsule(big_y, {}, true, 1u << 20);
    auto big_x = x.rw(nvme::io_opc::read, 1, 0, 256);
    x.send_capsule(big_x, {}, true, 1u << 20);
    EXPECT_EQ(h.buffers.waiting_in_fifo(), 1u);
    // 72 chunks would serve a 64 KiB read, but it must not pass the 1 MiB one waiting before it.
    auto small_y = y.rw(nvme::io_opc::read, 1, 0, 16);
    y.send_capsule(small_y, {}, true, 65536);
    EXPECT_EQ(h.buffers.waiting_in_fifo(), 2u);
    auto r1 = y.wait(big_y.cid);
    auto r2 = x.wait(big_x.cid);
    auto r3 = y.wait(small_y.cid);
    ASSERT_TRUE(r1 && r2 && r3);
    EXPECT_EQ(r1->data, w);
    EXPECT_EQ(r2->data, w);
    EXPECT_EQ(r3->data, std::vector<uint8_t>(w.begin(), w.begin() + 65536));
    EXPECT_EQ(h.buffers.waiting_in_fifo(), 0u);
}

TEST(connection, outstanding_cid_reused_gets_command_id_conflict) {
    io_pair q;
    host_conn& io = q.io;
    auto a = pattern(16384, 21);
    // The original: a write waiting for its R2T data.
    auto orig = io.rw(nvme::io_opc::write, 1, 0, 4);
    io.send_capsule(orig, {}, false, 16384);
    tp::data_pdu r2t{};
    ASSERT_TRUE(io.recv_exact(&r2t, sizeof(r2t)));
    ASSERT_EQ(r2t.ch.type, tp::pdu_type::r2t);
    // The same CID again, a write of other data to LBA 8: refused, not executed.
    auto dup = io.rw(nvme::io_opc::write, 1, 8, 1);
    dup.cid = orig.cid;
    io.send_capsule(dup, pattern(4096, 22), true, 4096);
    auto r = io.wait(orig.cid);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, nvme::sc::cid_conflict);
    EXPECT_STREQ(nvme::status_name(r->status), "command id conflict");
    // The original still completes normally.
    io.send_h2c(orig.cid, r2t.ttag, 0, a.data(), 16384, true);
    auto w = io.wait(orig.cid);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->status, 0);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 0, 4), {}, 16384).data, a);
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::read, 1, 8, 1), {}, 4096).data, std::vector<uint8_t>(4096, 0));
    // Once completed, the CID is free again.
    auto again = io.rw(nvme::io_opc::flush, 1, 0, 1);
    again.cid = orig.cid;
    EXPECT_EQ(io.cmd(again).status, 0);
}

TEST(connection, invalid_commands_are_refused_before_r2t_or_buffers) {
    io_pair q;
    host_conn& io = q.io;
    const uint64_t blocks = (16u << 20) / 4096;
    struct bad {
        nvme::sqe cmd;
        uint32_t len;
        uint16_t status;
    };
    const bad cases[] = {
        {io.rw(nvme::io_opc::write, 2, 0, 16), 65536, nvme::sc::invalid_namespace | nvme::status_dnr},
        {io.rw(nvme::io_opc::write, 1, blocks - 8, 16), 65536, nvme::sc::lba_out_of_range | nvme::status_dnr},
        {io.rw(nvme::io_opc::write, 1, 0, 16), 32768, nvme::sc::sgl_invalid_data_length | nvme::status_dnr},
        {io.rw(nvme::io_opc::read, 9, 0, 256), 1u << 20, nvme::sc::invalid_namespace | nvme::status_dnr},
        {io.rw(nvme::io_opc::read, 1, blocks, 256), 1u << 20, nvme::sc::lba_out_of_range | nvme::status_dnr},
    };
    const uint64_t granted = q.h.buffers.chunks_granted();
    for (const bad& b : cases) {
        const bool write = b.cmd.opcode == nvme::io_opc::write;
        // Answered from the capsule alone (the host would send the data if asked by an R2T).
        io.send_capsule(b.cmd, {}, false, b.len);
        auto r = io.wait(b.cmd.cid, std::vector<uint8_t>(b.len, 0x5A));
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, b.status) << "cid " << b.cmd.cid;
        EXPECT_TRUE(r->data.empty()) << write;
    }
    EXPECT_TRUE(io.r2ts.empty());
    EXPECT_EQ(q.h.buffers.chunks_granted(), granted);
    // The same transfers where they are valid take chunks (and a write gets its R2T).
    EXPECT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 0, 16), pattern(65536, 3), 0, false).status, 0);
    EXPECT_EQ(io.r2ts.size(), 1u);
    EXPECT_EQ(q.h.buffers.chunks_granted(), granted + 8);
}

TEST(buffer_arbiter, iovec_tables_are_disjoint_bounded_and_reused) {
    env::dma_pool pool(1u << 20);  // 128 chunks: a slab of 256 entries (16 blocks of 16)
    tp::buffer_arbiter b(pool);
    EXPECT_EQ(b.free_table_entries(), 256u);
    iovec* t1 = b.take_table(128);
    iovec* t2 = b.take_table(128);
    ASSERT_NE(t1, nullptr);
    ASSERT_NE(t2, nullptr);
    EXPECT_TRUE(t2 >= t1 + 128 || t1 >= t2 + 128);
    EXPECT_EQ(b.take_table(17), nullptr);  // none left: the request would wait in the FIFO
    b.give_table(t1, 128);
    iovec* t3 = b.take_table(17);  // two blocks, first fit
    EXPECT_EQ(t3, t1);
    EXPECT_EQ(b.free_table_entries(), 256u - 128 - 32);
    b.give_table(t2, 128);
    b.give_table(t3, 17);
    EXPECT_EQ(b.free_table_entries(), 256u);
}

TEST(connection, an_8_mib_read_holds_its_chunks_until_all_its_data_is_sent) {
    // 1,024 chunks in one C2HData PDU: the request counts every transmit entry pointing into it.
    io_pair q;
    host_conn& io = q.io;
    auto d = pattern(8u << 20, 12);
    ASSERT_EQ(io.cmd(io.rw(nvme::io_opc::write, 1, 0, 2048), d, 0, false).status, 0);
    const size_t idle = q.h.pool.free_chunks();
    io.send_capsule(io.rw(nvme::io_opc::read, 1, 0, 2048), {}, true, 8u << 20);
    const size_t total = sizeof(tp::data_pdu) + d.size() + sizeof(tp::capsule_resp_pdu);
    std::vector<uint8_t> got(total);
    ASSERT_TRUE(io.recv_exact(got.data(), 256u << 10));  // a part of the data
    EXPECT_LE(q.h.pool.free_chunks(), idle - 1024);      // still held: the rest is queued to send
    ASSERT_TRUE(io.recv_exact(got.data() + (256u << 10), total - (256u << 10)));
    EXPECT_TRUE(std::equal(d.begin(), d.end(), got.begin() + sizeof(tp::data_pdu)));
    io.pump();
    EXPECT_EQ(q.h.pool.free_chunks(), idle);
}

TEST(connection, success_optimisation_on_io_queues_with_flow_control_when_the_target_says_always) {
    harness h;
    h.tgt.set_c2h_success(target::target::c2h_success_policy::always);
    association a(h);  // CATTR 0: the host keeps SQ flow control
    // The failing read's CapsuleResp has a real SQHD (flow control is on).
    EXPECT_NE(read_ends_with_success_but_a_failure_does_not(a.io, 5).cqe.sqhd, 0xFFFF);
    // The admin queue keeps its CapsuleResps.
    auto id = a.admin.identify(nvme::cns::ctrl);
    EXPECT_EQ(id.status, 0);
    EXPECT_TRUE(id.got_resp);
}
