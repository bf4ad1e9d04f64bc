// The target side of one queue (= one transport connection): Connect binds it to a
// controller, then admin or I/O commands are parsed, validated and executed.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "nvme/block_queue.hh"
#include "target/subsystem.hh"
#include "transport/connection.hh"

namespace ferry::target {

class target;
namespace auth {
class session;
struct session_params;
}  // namespace auth

class queue final : public transport::queue_handler {
public:
    queue(target& tgt, transport::connection& conn);
    ~queue() override;

    void on_command(transport::request& req) override;
    uint16_t check(transport::request& req) override;
    bool abandon(uint16_t cid) override;
    void on_close() override;
    void on_timer(uint64_t now_ns) override;
    unsigned poll() override;
    unsigned in_flight() const override;
    bool wants_polling() const override;

    const std::shared_ptr<controller>& ctrl() const { return _ctrl; }
    // Queues an async event for the host (admin queue of an I/O or discovery controller).
    void raise_event(uint32_t aen_result);

private:
    // Completion slot for commands sent to a backend queue, one per request tag.
    struct io_slot final : nvme::io_completion {
        queue* owner = nullptr;
        transport::request* req = nullptr;
        ns_io_counters* counters = nullptr;  // the namespace's, of this queue
        uint64_t arrival_ns = 0;             // when the command reached the queue (latency)
        // A command beyond its store's transfer limit goes to the store in pieces, one after
        // another, each a sub-span of the request's iovecs (or a part of one: piece_iov).
        uint32_t piece_limit = 0;  // bytes per piece; 0 = the whole command at once
        nvme::block_queue* bq = nullptr;
        nvme::sqe piece_cmd{};
        iovec piece_iov{};
        uint32_t done_bytes = 0;   // of the pieces completed
        uint32_t piece_bytes = 0;  // of the piece in flight
        uint32_t next_inner = 0;   // where the next piece starts: byte in iovec next_iov
        uint16_t next_iov = 0;
        uint16_t piece_status = 0;
        uint8_t lbads = 0;
        bool wakes_owner = false;      // its store pokes the reactor when it completes
        bool submitting = false;       // inside bq->submit()
        bool piece_completed = false;  // ... and the piece completed there
        void complete(uint16_t status) override;
        void submit_pieces();
        void end(uint16_t status);  // the command is done
    };

    // This I/O queue's own view of one namespace: the I/O path reads only this (no lock, no
    // shared state but the subsystem's generation). Resynced on this reactor when the
    // subsystem's namespace generation moved.
    struct ns_binding {
        enum class state : uint8_t {
            none,
            setting_up,  // backend queue not ready yet: commands get Namespace Not Ready
            active,
            draining,  // removed: no new commands; those in flight complete
            closing,   // backend queue closed, waiting until released()
        };
        state st = state::none;
        std::shared_ptr<ns> n;  // keeps the namespace (and its store) alive while bound
        std::unique_ptr<nvme::block_queue> bq;
        std::shared_ptr<ns_io_counters> counters;
        uint64_t blocks = 0;
        uint8_t lbads = 0;
        uint32_t piece_limit = 0;   // Read/Write/Compare larger than this are split (0: never)
        uint16_t ana_status = 0;    // non-zero: its ANA group is not accessible through this path
        bool wakes_owner = false;   // bq->completes_by_wakeup()
        bool reads_zeroes = false;  // store->reads_zeroes(): a Read's data is sent from zero_bytes()
        // Its commands in flight are counters->outstanding (the busy-time count).

        // A Read whose data is zeroes from zero_bytes(): it needs no buffers (request::zero_data).
        bool zero_read(const nvme::sqe& c) const { return reads_zeroes && c.opcode == nvme::io_opc::read; }
    };

    void finish(transport::request& req, uint16_t status, uint32_t result0 = 0, uint32_t result1 = 0);
    // Error Information log entry for a command completed with an error (locks: error path only).
    void record_error(const transport::request& req, uint16_t status);
    // The bookkeeping of a command that failed: error log entry, the namespace's error counter.
    void note_error(const transport::request& req, uint16_t status);
    void reply_data(transport::request& req, const void* src, size_t len, size_t offset = 0);

    // An I/O queue Connect waiting for its backend queues: an SSD's hardware queue is created
    // by the controller's admin thread while this reactor serves its other connections.
    struct pending_connect {
        transport::request* req = nullptr;
        std::shared_ptr<controller> ctrl;
        uint16_t qid = 0;
        uint16_t depth = 0;
    };

    // fabrics_cmd.cc
    void exec_fabrics(transport::request& req);
    void exec_connect(transport::request& req);
    void advance_connect();  // completes or fails the pending Connect once its queues are set up
    void exec_property_get(transport::request& req);
    void exec_property_set(transport::request& req);
    void apply_cc(uint32_t value);
    void settle_reset();  // a reset or shutdown the host asked for completes once no I/O queue is left
    bool reset_since_connect() const { return _ctrl->resets.load() != _resets_seen; }  // I/O queues
    // auth_cmd.cc: DH-HMAC-CHAP on this queue (Authentication Send/Receive)
    bool auth_wanted(const subsystem& sub, const std::string& hostnqn) const;
    uint32_t start_auth();  // after a successful Connect: AUTHREQ for its result (0: none)
    auth::session_params auth_params(const host_keys& keys) const;  // parsed (an unusable key: none)
    void exec_auth_send(transport::request& req);
    void exec_auth_recv(transport::request& req);
    void auth_settled();               // logs an exchange that ended, feeds the back-off
    void auth_timer(uint64_t now_ns);  // held answers, the time limit, a failed exchange
    // admin_cmd.cc
    void exec_admin(transport::request& req);
    void exec_identify(transport::request& req);
    void exec_get_log_page(transport::request& req);
    void exec_set_features(transport::request& req);
    void exec_get_features(transport::request& req);
    void exec_async_event(transport::request& req);
    void deliver_events();
    std::vector<uint8_t> build_log(uint8_t lid, uint32_t nsid, bool& known);
    // io_cmd.cc
    void exec_io(transport::request& req);
    uint16_t check_io(const transport::request& req);  // 0 or the status; needs no data
    uint16_t refuse_unready();                          // check_io's answer when the controller is not ready
    std::string association_end() const;                // why this queue's controller is dead, for logs
    // Namespace table (queue.cc): bind new namespaces, retire removed ones, refresh sizes.
    // `group` gathers the backend queues made now (one Connect's, or one resync's).
    // Returns false if a backend queue could not be made (`why` says which and why).
    bool resync_namespaces(nvme::queue_group& group, std::string& why);
    void resync_namespaces();  // after Connect: logs what failed
    void retire(uint32_t nsid);
    void refresh_ana();          // bindings' ana_status from the controller's listener, when the count moved
    void advance_bindings();     // setting_up -> active, draining -> closing -> none
    void unbind(ns_binding& b);  // drops a binding whose backend queue was released
    void drop_bindings();        // a failed Connect: none was used
    // Control-path notices for the admin queue (AENs, log page 04h).
    void take_notices();

    target& _tgt;
    transport::connection& _conn;
    std::shared_ptr<subsystem> _subsys;  // outlives _ctrl (declared first): a removed one lives on
    std::shared_ptr<controller> _ctrl;
    uint16_t _qid = 0;
    uint16_t _depth = 0;
    bool _closed = false;
    uint32_t _resets_seen = 0;  // the controller's resets when this I/O queue connected
    std::vector<io_slot> _slots;
    std::vector<ns_binding> _ns;  // indexed by NSID (I/O queues)
    // The subsystem's namespace generation (one load per command) and the one _ns reflects.
    const std::atomic<uint64_t>* _ns_generation = nullptr;
    uint64_t _ns_seen = 0;
    uint64_t _ana_seen = 0;        // the target's ANA change count the bindings' ana_status reflects (0: stale)
    unsigned _bindings_busy = 0;   // bindings setting up, draining or closing
    bool _resync_pending = false;  // a namespace waits for its NSID's old binding to go
    std::vector<transport::request*> _aers;  // parked Async Event Requests
    unsigned _in_flight = 0;
    unsigned _in_flight_waking = 0;  // of _in_flight, those whose store pokes the reactor
    uint64_t _arrival_ns = 0;        // clock read when the current command arrived (on_command)
    counter_labels _counter_labels;  // subsystem, host, cntlid and qid of this I/O queue's counters
    std::optional<pending_connect> _connecting;
    // A Connect or a teardown waits on the backend queues: keeps poll() running and the
    // connection alive (in_flight()) until they are set up, or released by their device.
    bool _backend_busy = false;
    // DH-HMAC-CHAP (host with a key): refuses other commands until authenticated.
    std::unique_ptr<auth::session> _auth;
    uint64_t _auth_deadline_ns = 0;            // the exchange must end by then
    transport::request* _auth_held = nullptr;  // an Auth Receive answer held back (back-off)
    uint64_t _auth_release_ns = 0;
    std::vector<uint8_t> _auth_answer;
};

}  // namespace ferry::target
