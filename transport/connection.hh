// One NVMe/TCP connection (= one NVMe queue pair): the PDU state machine for receiving
// capsules and data, and the batched transmit path. Owned by one reactor; not thread-safe.
//
// The connection knows nothing about what a command means. It hands complete commands
// (with their host-to-controller data, if any) to a queue_handler implemented by the target,
// which answers through complete().
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "env/dma_pool.hh"
#include "nvme/spec.hh"
#include "transport/admission.hh"
#include "transport/event_summary.hh"
#include "transport/pdu.hh"
#include "transport/tls.hh"

namespace ferry::transport {

class tls_session;

// Limits shared with the target (which advertises them in Identify).
inline constexpr uint32_t max_transfer_bytes = 8u << 20;                 // MDTS = 11 (2^11 * 4 KiB)
inline constexpr uint32_t in_capsule_bytes = env::dma_pool::chunk_size;  // admin, fabrics and I/O
// MAXH2CDATA: a whole transfer, as SPDK's target (its max I/O size). A write gets one R2T for
// its whole length, and older Linux hosts (before the 2021 change "nvme-tcp: send H2CData PDUs
// based on MAXH2CDATA") answer an R2T with one H2CData PDU of its whole length whatever
// MAXH2CDATA says: with 128 KiB, their writes over 128 KiB failed. The
// data goes straight into the command's chunks, so a larger PDU costs no memory.
inline constexpr uint32_t maxh2cdata_bytes = max_transfer_bytes;
inline constexpr unsigned max_chunks = max_transfer_bytes / env::dma_pool::chunk_size;
// Chunks a request describes inline (128 KiB); a larger transfer takes an iovec table from its
// reactor's buffer_arbiter together with its chunks.
inline constexpr unsigned inline_chunks = (128u << 10) / env::dma_pool::chunk_size;
static_assert(max_chunks <= UINT16_MAX, "a transmit data run indexes a request's chunks in 16 bits");
// max_transfer_bytes (8 MiB) of zeroes, read-only, shared by every reactor: the data of a Read
// from a store whose reads are zeroes (request::zero_data). Real pages, written once: an
// untouched mapping (every page the kernel's one zero page, no memory) made the socket's copy
// slower than copying a request's memset chunk (4 KiB reads at QD32: 5% fewer IOPS; these
// pages: 7% more). Mapped by the first call (the target's, when it makes a null namespace).
const uint8_t* zero_bytes();
inline constexpr uint64_t icreq_timeout_ns = 10'000'000'000ull;
// How long a host may take to send all the data of an R2T (the Linux host sends it at once).
inline constexpr uint64_t default_r2t_timeout_ns = 15'000'000'000ull;

enum class request_state : uint8_t {
    free,
    wait_buffer,  // needs pool chunks for its data: in the reactor's FIFO or parked at its connection's cap
    wait_h2c,     // R2T sent, receiving H2CData
    executing,    // with the handler / backend
    responding,   // response queued, waiting for the socket to take it
};

class connection;

// Which waiting line a wait_buffer request is in.
enum class wait_line : uint8_t { none, reactor_fifo, connection_cap };

struct request {
    nvme::sqe cmd{};
    // Filled by the handler before complete(): result dwords and status (SCT<<8|SC|DNR).
    uint32_t result0 = 0;
    uint32_t result1 = 0;
    uint16_t status = 0;

    uint16_t tag = 0;  // index in the connection's table; R2T TTAG
    request_state state = request_state::free;
    nvme::data_direction dir = nvme::data_direction::none;
    uint32_t data_len = 0;      // from the SGL
    uint32_t h2c_received = 0;  // bytes of R2T data received so far
    uint16_t chunk_count = 0;   // pool chunks held (0 when the reserved chunk is used), listed in iov
    bool data_digest_error = false;
    // Set by the handler for a Read whose store reads zeroes: the C2HData is sent from
    // zero_bytes() and the request's chunks, if any, are neither written nor sent. Set in
    // check(), the request gets no chunks at all.
    bool zero_data = false;
    uint16_t tx_refs = 0;  // transmit entries still pointing into this request (up to 4)
    uint16_t iov_count = 0;
    wait_line waiting_in = wait_line::none;
    connection* conn = nullptr;    // owner (the reactor's buffer FIFO spans connections)
    request* wait_prev = nullptr;  // intrusive links of the waiting line
    request* wait_next = nullptr;
    uint64_t r2t_sent_ns = 0;
    bool cid_tracked = false;  // holds its cid's bit in the connection's outstanding set

    // The data's chunks: inline_iov, or (more than inline_chunks) a table of the arbiter's.
    std::array<iovec, inline_chunks> inline_iov{};  // declared first: iov points into it
    iovec* iov = inline_iov.data();
    iovec reserved_chunk{};  // one chunk of its own: in-capsule data and small transfers

    // Transmit headers for PDUs sent on behalf of this request (+4 for HDGST).
    alignas(8) std::array<uint8_t, sizeof(data_pdu) + 4> r2t_pdu{};
    alignas(8) std::array<uint8_t, sizeof(data_pdu) + 4> c2h_pdu{};
    alignas(8) std::array<uint8_t, sizeof(capsule_resp_pdu) + 4> resp_pdu{};
    uint32_t c2h_ddgst = 0;

    std::span<const iovec> data() const { return {iov, iov_count}; }
    // Copies up to `len` bytes of the data buffer into `dst`; returns bytes copied.
    size_t copy_out(void* dst, size_t len, size_t offset = 0) const;
    // Copies `len` bytes from `src` into the data buffer at `offset`; returns bytes copied.
    size_t copy_in(const void* src, size_t len, size_t offset = 0);
};

// An intrusive FIFO of requests (through wait_prev/wait_next): no allocation to wait.
class request_list {
public:
    bool empty() const { return _head == nullptr; }
    request* front() const { return _head; }
    size_t size() const { return _size; }
    void push_back(request& r);
    void remove(request& r);  // r must be in this list

private:
    request* _head = nullptr;
    request* _tail = nullptr;
    size_t _size = 0;
};

// One reactor's buffer pool with the rules for who gets its chunks. A transfer larger than a
// request's reserved chunk takes "extra" chunks from the pool: at most `connection_chunks` per
// connection at once, and when the pool cannot serve it the request waits in ONE FIFO shared
// by all connections of the reactor, served strictly in arrival order (a request at its
// connection's cap waits on its connection instead and does not hold up the FIFO). A request
// whose R2T data has not all arrived within `r2t_timeout_ns` closes its connection, which
// returns every chunk it held. A transfer of more than inline_chunks chunks also takes an iovec
// table (a run of the arbiter's slab, sized to hold every pool chunk twice over so that only
// fragmentation can make it wait, in the same FIFO). Not thread-safe: belongs to the reactor thread.
class buffer_arbiter {
public:
    // connection_chunks 0 = default_connection_chunks(pool).
    explicit buffer_arbiter(env::dma_pool& pool, size_t connection_chunks = 0,
                            uint64_t r2t_timeout_ns = default_r2t_timeout_ns);
    // A quarter of the pool, never less than one maximal transfer.
    static size_t default_connection_chunks(const env::dma_pool& pool);

    env::dma_pool& pool() const { return _pool; }
    size_t connection_chunks() const { return _connection_chunks; }
    uint64_t r2t_timeout_ns() const { return _r2t_timeout_ns; }

    // Starts waiting requests in arrival order while the pool can serve the oldest; returns
    // true if any started. The reactor calls it every pass.
    bool serve();
    // Requests that had to wait for chunks (FIFO or cap) since creation; requests waiting now.
    uint64_t waits() const { return _waits; }
    size_t waiting_in_fifo() const { return _fifo.size(); }
    // Extra chunks handed to requests since creation (each grant counted once).
    uint64_t chunks_granted() const { return _chunks_granted; }
    // An iovec table for `chunks` entries (more than inline_chunks), or null when the slab has
    // no free run that long; give_table() returns it.
    iovec* take_table(unsigned chunks);
    void give_table(iovec* table, unsigned chunks);
    size_t free_table_entries() const { return _table_free * inline_chunks; }
    // Chunks of the pool that no queue entry reserves (the most one transfer can ever get).
    size_t unreserved_chunks() const { return _pool.total_chunks() - _reserved; }

private:
    friend class connection;
    env::dma_pool& _pool;
    std::vector<iovec> _table_slab;    // in blocks of inline_chunks entries
    std::vector<uint8_t> _table_used;  // per block
    size_t _table_free = 0;            // free blocks
    size_t _connection_chunks;
    uint64_t _r2t_timeout_ns;
    request_list _fifo;
    uint64_t _waits = 0;
    uint64_t _chunks_granted = 0;
    size_t _reserved = 0;  // reserved chunks of every queue entry of every connection
    event_summary _unservable;  // refuse_unservable()'s warnings
};

// Identity of a connection for logs and for discovery (local address the host reached).
struct connection_info {
    uint64_t id = 0;
    std::string peer;        // "addr:port"
    std::string local_addr;  // address the host connected to
    uint16_t local_port = 0;
    bool ipv6 = false;
    unsigned reactor = 0;  // id of the reactor serving it (set by the reactor)
    tls_mode listener_tls = tls_mode::none;  // what the listener it came through allows
    // Set once a TLS handshake succeeded: the NQNs of the PSK identity the host used. The
    // target holds the Connect to them (a PSK proves only the host it was configured for).
    bool tls = false;
    std::string tls_hostnqn;
    std::string tls_subnqn;
    // Its place in the acceptor's admission count (none for connections made in tests).
    std::shared_ptr<admission::ticket> ticket;
};

// Implemented by the target for each connection.
class queue_handler {
public:
    virtual ~queue_handler() = default;
    // A command and its host-to-controller data are ready. The handler fills status/result
    // and calls connection::complete(req), now or later.
    virtual void on_command(request& req) = 0;
    // A command whose data is to come by R2T, or that needs pool chunks beyond its reserved one,
    // before either is done: 0 to go on, else the NVMe status it is completed with at once (no
    // R2T, no chunks). The transport asks; the handler decides what is valid (parse, then
    // execute). on_command() follows for a command that passed, at once. A handler may also
    // set req.zero_data on a Read that passed: its data will be zeroes, so the transport takes
    // no chunks for it (nor waits for any) and on_command() gets it with no data buffers.
    virtual uint16_t check(request& /*req*/) { return 0; }
    // A new command reuses the CID of one still outstanding on this queue. The handler may give
    // the old one up, when the host cannot be waiting for it any more (an Async Event Request:
    // SPDK's host aborts its AERs locally at shutdown and reuses their CIDs), by calling
    // connection::drop() on it and returning true; the new command then runs. Otherwise it gets
    // Command ID Conflict.
    virtual bool abandon(uint16_t /*cid*/) { return false; }
    // The connection is closing; no more commands will arrive.
    virtual void on_close() = 0;
    // Called about every 100 ms from the reactor (keep-alive, teardown checks).
    virtual void on_timer(uint64_t now_ns) = 0;
    // Polls the handler's backend queues; returns completions reaped.
    virtual unsigned poll() { return 0; }
    // Backend commands still outstanding: the connection is not destroyed before 0.
    virtual unsigned in_flight() const { return 0; }
    // The reactor must keep polling (not sleep): backend work that only poll() advances is
    // outstanding. Commands whose store wakes the reactor when they complete do not count.
    virtual bool wants_polling() const { return in_flight() > 0; }
};

class handler_factory {
public:
    virtual ~handler_factory() = default;
    virtual std::unique_ptr<queue_handler> make_handler(connection& conn) = 0;
    // TLS handshake (reactor thread, must not block): the configured PSK of (hostnqn,
    // subnqn) named by the host's PSK identity; none = the handshake fails.
    virtual std::optional<configured_psk> find_tls_psk(const std::string& /*hostnqn*/,
                                                       const std::string& /*subnqn*/) {
        return std::nullopt;
    }
};

class connection {
public:
    // Takes ownership of the connected, non-blocking socket `fd`. Throws if the pool cannot
    // spare the first request's chunk.
    connection(int fd, connection_info info, buffer_arbiter& buffers, handler_factory& factory, uint64_t now_ns);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // Reactor entry points, posix socket engine. Each returns true if it did any work.
    bool on_readable();
    bool flush();

    // io_uring socket engine: the reactor keeps one multishot receive armed per connection
    // (arm_recv: true when it must be (re)armed now) and at most one send in flight
    // (prepare_send: false when there is nothing to send or one is in flight), and hands
    // their results back here. on_received gets one completion's bytes, which live in the
    // reactor's provided buffer only for the call; on_recv_ended the result of the
    // completion that ended the receive (0, -errno, or bytes when the kernel stopped early).
    bool arm_recv();
    bool on_received(const uint8_t* p, size_t n);
    bool on_recv_ended(int result);
    bool prepare_send(msghdr*& msg);
    bool on_send_done(int result);  // bytes sent or -errno
    unsigned engine_ops_in_flight() const { return _recv_in_flight + _send_in_flight; }
    bool retry_waiting() { return _buffers.serve(); }  // the reactor's requests waiting for buffers
    void on_timer(uint64_t now_ns);

    // Target entry points.
    void complete(request& req);
    // A command the host will never see answered (queue_handler::abandon): released, no response.
    void drop(request& req);
    // After a successful Connect: queue id, depth (sqsize + 1), SQ flow control (off: every
    // CQE's SQHD is 0xFFFF), and whether a successful read with DW0/DW1 0 ends with a
    // C2HData SUCCESS instead of a CapsuleResp (the target's policy; nvme-reference.md 1.11).
    // Grows the request table; returns false if the buffer pool cannot back it.
    bool configure_queue(uint16_t qid, uint16_t depth, bool sq_flow_disabled, bool c2h_success);
    // In-band authentication follows the Connect (set before configure_queue): the admission
    // ticket counts the connection as pending until set_auth_pending(false).
    void set_auth_pending(bool pending);
    // Starts an orderly close (the reason is logged once).
    void close(const std::string& reason);

    bool closing() const { return _closing; }
    // True once closed and nothing references the connection's memory any more.
    bool reapable() const;
    bool wants_write() const;
    int fd() const { return _fd; }
    const connection_info& info() const { return _info; }
    // The buffer pool request data lives in (a backing SSD needs its device addresses).
    const env::dma_pool& pool() const { return _pool; }
    // Extra pool chunks (beyond the reserved ones) this connection's transfers hold now.
    size_t extra_chunks() const { return _extra_chunks; }
    uint16_t qid() const { return _qid; }
    bool queue_configured() const { return _configured; }
    digests negotiated_digests() const { return _digests; }
    queue_handler* handler() { return _handler.get(); }

    // Decoder entry point, also used by tests and the fuzzer: consumes bytes as if read from
    // the socket. Returns false if the connection decided to close.
    bool feed(const uint8_t* data, size_t len);

    // Transmit ring entries one request holds at most: a C2HData header, its data (one entry
    // however many chunks), the data digest and the response; or an R2T.
    static constexpr size_t tx_entries_per_request = 4;
    // The transmit ring a connection with `requests` request objects needs (+2: ICResp and
    // C2HTermReq); configure_queue sizes it so, so that it never grows while serving.
    static constexpr size_t tx_ring_entries(size_t requests) { return tx_entries_per_request * requests + 2; }
    size_t tx_ring_capacity() const { return _tx.size(); }

private:
    friend class buffer_arbiter;
    enum class rx_state : uint8_t { header, pad, data, ddgst, term_data };

    // One transmit ring entry: bytes, or a request's data run (every chunk of owner->data(): the
    // current piece in iov, then owner->iov[run_next..run_end)), so that an 8 MiB C2HData takes
    // one entry, not 1,024.
    struct tx_entry {
        iovec iov;
        request* owner;         // decremented when sent; nullptr for connection-level PDUs
        uint16_t run_next = 0;  // data run: the next of owner's chunks to send after iov
        uint16_t run_end = 0;   // data run: owner->iov_count; run_next == run_end otherwise
    };

    bool process_rx(const uint8_t*& p, const uint8_t* end);
    // Bytes as read from the socket: plain PDUs, or TLS records (decided by the first byte).
    bool on_wire(const uint8_t* p, size_t n);
    bool tls_receive();
    void tls_encrypt();
    void tls_seal_queued();
    bool tls_fill_out();
    bool flush_tls();
    bool handle_header();
    bool handle_ic_req();
    bool handle_capsule();
    bool handle_h2c_data();
    void handle_term_req();
    bool finish_data();
    inline void start_data(request& req);
    void request_buffer(request& req);
    bool over_cap(const request& req) const;
    bool take_chunks(request& req);
    void put_chunks(request& req);
    void unpark();
    void drop_waiting_and_r2t();
    void check_r2t_timeout(uint64_t now_ns);
    inline void forget_cid(request& req);
    inline void send_r2t(request& req);
    inline void execute(request& req);
    void respond_now(request& req, uint16_t status);
    bool refuse_unservable(request& req);  // answers a transfer the pool can never serve
    void release(request& req);
    inline request* alloc_request();
    void fatal(uint16_t fes, uint32_t fei, const std::string& why);
    inline void push_tx(const void* base, size_t len, request* owner);
    inline void push_tx_data(request& req);
    void resize_tx(size_t entries);
    // Fills _tx_iov from the ring (data runs expanded, at most IOV_MAX); returns the count.
    size_t gather_tx(size_t& total_bytes);
    void sent(size_t bytes);
    void discard_tx();  // nothing more will be sent: drops every entry
    size_t rx_target_space(iovec* out, size_t max) const;
    void add_requests(unsigned count);

    // What the socket carries: decided by the listener's mode and the host's first byte.
    enum class wire_mode : uint8_t { undecided, plain, tls };

    int _fd;
    connection_info _info;
    handler_factory& _factory;
    wire_mode _wire = wire_mode::plain;
    std::unique_ptr<tls_session> _tls;
    std::vector<uint8_t> _tls_plain;  // decrypted bytes for process_rx; also the encrypt batch
    std::vector<uint8_t> _tls_out;    // ciphertext being sent (stable while io_uring sends it)
    size_t _tls_out_off = 0, _tls_out_len = 0;
    buffer_arbiter& _buffers;
    env::dma_pool& _pool;
    std::unique_ptr<queue_handler> _handler;

    bool _ic_done = false;
    bool _configured = false;
    bool _auth_pending = false;  // set_auth_pending()
    bool _closing = false;
    bool _sq_flow_disabled = false;
    bool _c2h_success = false;  // configure_queue()
    digests _digests;
    uint16_t _qid = 0;
    uint16_t _sqhd = 0;   // SQ head after the last command taken, in [0, _depth) once configured
    uint16_t _depth = 0;  // configure_queue(); 0 before: _sqhd counts the commands taken
    uint64_t _created_ns;

    // Receive side.
    rx_state _rx = rx_state::header;
    std::array<uint8_t, max_header_len + 4> _hdr{};
    size_t _hdr_have = 0;
    header_check _cur{};
    size_t _skip = 0;                // pad / term data bytes left to skip
    request* _rx_req = nullptr;      // request receiving data
    uint32_t _rx_offset = 0;         // where in its buffer
    uint32_t _rx_left = 0;           // payload bytes left in this PDU
    uint32_t _rx_pdu_start = 0;      // payload offset where this PDU began (for DDGST)
    std::array<uint8_t, 4> _ddgst{};
    size_t _ddgst_have = 0;
    std::vector<uint8_t> _rx_buf;

    // Requests.
    std::vector<std::unique_ptr<request>> _requests;
    std::vector<uint16_t> _free_tags;
    // CIDs outstanding on this queue: one bit per possible CID (8 KiB), O(1) conflict check.
    std::vector<uint64_t> _cids_outstanding;
    request_list _parked;      // wait_buffer requests held back by the connection's cap
    size_t _extra_chunks = 0;  // pool chunks held beyond the reserved ones

    // Transmit ring.
    std::vector<tx_entry> _tx;
    size_t _tx_head = 0, _tx_count = 0;
    std::vector<iovec> _tx_iov;
    msghdr _tx_msg{};
    uint8_t _recv_in_flight = 0, _send_in_flight = 0;
    alignas(8) std::array<uint8_t, sizeof(ic_resp_pdu)> _ic_resp{};
    alignas(8) std::array<uint8_t, sizeof(term_req_pdu) + term_req_max_error_data> _term{};
};

}  // namespace ferry::transport
