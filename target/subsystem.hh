// Subsystems, their namespaces, allowed hosts and live controllers.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "nvme/block_queue.hh"
#include "target/ana.hh"
#include "target/config.hh"
#include "target/stats.hh"

namespace ferry::target {

class subsystem;

// One namespace. Immutable once published, except `blocks` (grown by resize_namespace) and the
// counters. Held by shared_ptr: by its subsystem's table and by every I/O queue bound to it, so
// a removed namespace (and its store) lives until the last queue has let go of it.
struct ns {
    uint32_t nsid = 0;
    backend_kind backend = backend_kind::ram;
    std::unique_ptr<nvme::block_store> store;
    std::atomic<uint64_t> blocks{0};  // written by resize_namespace before the generation moves
    // ANAGRPID; moved by set_namespace_ana_group (before the target's ANA change count moves).
    std::atomic<uint32_t> ana_group{1};
    uint32_t block_size = 0;
    uint8_t lbads = 0;  // log2(block_size)
    std::array<uint8_t, 16> uuid{};
    std::array<uint8_t, 16> nguid{};
    std::array<uint8_t, 8> eui64{};  // zero = not set (not reported)
    namespace_config config;         // what it was built from, NSID/UUID/NGUID made explicit
    std::unique_ptr<ns_stats> stats = std::make_unique<ns_stats>();  // SMART counters, all queues

    uint64_t block_count() const { return blocks.load(std::memory_order_acquire); }
    bool has_eui64() const { return eui64 != std::array<uint8_t, 8>{}; }
};

// Builds a namespace and its store from `cfg` (cfg.nsid set). Throws std::runtime_error
// naming the subsystem and NSID if the store cannot be made.
std::shared_ptr<ns> make_namespace(const std::string& subnqn, const namespace_config& cfg);

using ns_table = std::map<uint32_t, std::shared_ptr<ns>>;

// A consistent view of a subsystem's namespaces at one moment (an immutable table, shared).
// Iterates as (NSID, const ns&) pairs in NSID order.
class ns_snapshot {
public:
    explicit ns_snapshot(std::shared_ptr<const ns_table> t) : _table(std::move(t)) {}
    struct iterator {
        ns_table::const_iterator it;
        std::pair<uint32_t, const ns&> operator*() const { return {it->first, *it->second}; }
        iterator& operator++() {
            ++it;
            return *this;
        }
        bool operator==(const iterator& o) const { return it == o.it; }
    };
    iterator begin() const { return {_table->begin()}; }
    iterator end() const { return {_table->end()}; }
    size_t size() const { return _table->size(); }
    bool empty() const { return _table->empty(); }
    const ns_table& table() const { return *_table; }

private:
    std::shared_ptr<const ns_table> _table;
};

// Why the target ended a controller's association (all its connections are closed).
enum class teardown : uint8_t { none, keep_alive, subsystem_removed, host_removed, dropped };
const char* teardown_name(teardown t);

// A queue of a controller as the management API shows it.
struct queue_record {
    uint16_t qid = 0;
    uint16_t depth = 0;
    unsigned reactor = 0;
    uint64_t connection = 0;
    std::string peer;
};

// Controller state. Registers, features and AERs are touched only on the admin queue's
// reactor; the atomics are shared with I/O queues on other reactors.
class controller {
public:
    controller(subsystem& subsys, uint16_t cntlid, std::string hostnqn, std::array<uint8_t, 16> hostid,
               uint32_t kato_ms, std::shared_ptr<const ana_port> ana);

    subsystem& subsys;
    const uint16_t cntlid;
    const std::string hostnqn;
    const std::array<uint8_t, 16> hostid;
    // The ANA states of the listener its admin queue connected through (never null).
    const std::shared_ptr<const ana_port> ana;

    // admin-queue owned
    uint32_t cc = 0;
    uint32_t csts = 0;
    std::atomic<uint32_t> kato_ms;  // also read by the management API
    uint32_t aen_config = 0;
    std::atomic<uint16_t> granted_io_queues{0};  // after Set Features Number of Queues (1-based count)
    // CC.EN cleared or a shutdown asked (apply_cc) while I/O queues were connected: CSTS.RDY
    // clears, SHST completes, once they are gone (settle_reset).
    bool reset_pending = false;
    std::vector<uint32_t> pending_events;        // AEN results waiting for an AER
    // Event types reported (or queued) whose log the host has not read with RAE cleared since:
    // masked, as the spec asks and nvmet does (bits: aen_mask_bit of the event's log page).
    uint32_t aen_masked = 0;
    std::vector<uint32_t> changed_nsids;         // for log page 04h

    // shared
    std::atomic<uint64_t> last_traffic_ns{0};
    std::atomic<bool> dead{false};
    std::atomic<bool> ready{false};  // enabled and not shut down: I/O Connect and I/O commands may run
    // Counts the host's controller resets (CC.EN 1 to 0) and shutdowns: an I/O queue connected
    // before one closes (its next command or timer tick), as a reset deletes the I/O queues.
    // Incremented after `ready` is cleared; an I/O Connect reads it before `ready`.
    std::atomic<uint32_t> resets{0};
    // Connected I/O queues not yet destroyed: a closed one lives on until its commands are done
    // in the stores, and a reset completes only after that (an SSD, file or rbd write still in
    // flight must not land after the host saw RDY 0 and wrote again).
    std::atomic<uint32_t> io_queues_alive{0};
    error_log errors;                // commands completed with an error, on any of its queues

    std::string name() const;  // "controller 1 of nqn... (host nqn...)", host_label() of an empty NQN

    // Ends the association (any thread): every queue of it closes its connection on its next
    // timer tick (100 ms). The first reason given is the one logged.
    void drop(teardown why);
    teardown dropped_why() const { return _teardown.load(); }

    // Notices from the control path (any thread) for the admin queue, which takes them on its
    // own reactor (each admin command and timer tick) and raises the AENs.
    void notify_ns_changed(uint32_t nsid);
    void notify_discovery_changed();
    void notify_ana_changed();  // a state of its listener or a group's membership changed
    bool has_notices() const { return _has_notices.load(std::memory_order_acquire); }
    // Admin queue: what was noticed since the last call.
    void take_notices(std::vector<uint32_t>& nsids, bool& ns_changed, bool& discovery_changed, bool& ana_changed);

    // Queues of the association, for the management API (control path, locked).
    void add_queue_record(const queue_record& q);
    void remove_queue_record(uint16_t qid);
    std::vector<queue_record> queue_records() const;

    // Returns false if qid is already connected (I/O queues; control path, locked).
    bool claim_queue(uint16_t qid);
    void release_queue(uint16_t qid);
    // An I/O queue is claimed (connected or connecting): Number of Queues may not change then
    // (Command Sequence Error, NVMe 2.0 5.27.1.5; SPDK), and a reset is not complete.
    bool has_io_queues() const;

private:
    mutable std::mutex _queue_lock;
    std::vector<bool> _queues;
    std::vector<queue_record> _records;
    std::atomic<teardown> _teardown{teardown::none};
    std::mutex _notice_lock;
    std::atomic<bool> _has_notices{false};
    std::vector<uint32_t> _notice_nsids;
    bool _notice_ns = false;
    bool _notice_discovery = false;
    bool _notice_ana = false;
};

// A subsystem. Held by shared_ptr: the target's list and every queue of its controllers, so a
// removed subsystem lives until its last connection is gone.
class subsystem {
public:
    // Builds every namespace's store; throws std::runtime_error if one cannot be made.
    subsystem(const subsystem_config& cfg, bool discovery);

    const std::string& nqn() const { return _nqn; }
    bool is_discovery() const { return _discovery; }
    // Model and serial change only before the first controller is created (update()).
    std::string serial() const;
    std::string model() const;
    bool host_allowed(const std::string& hostnqn) const;
    bool allows_any_host() const;
    std::vector<std::string> hosts() const;

    // Namespaces (any thread; a lock on the control path, never taken per I/O command: I/O
    // queues keep their own tables and resync when ns_generation() moved).
    ns_snapshot namespaces() const;
    std::shared_ptr<ns> find_ns(uint32_t nsid) const;
    // Moves (release) after every namespace change, once the new table is published.
    const std::atomic<uint64_t>& ns_generation() const { return _ns_generation; }
    // Identify ONCS: the optional commands every namespace's store carries out.
    uint16_t optional_commands() const { return _oncs.load(std::memory_order_relaxed); }
    // Identify VWC: a volatile write cache unless every namespace the first controller saw
    // stores writes before acknowledging them (rbd with rbd_cache=false).
    bool volatile_write_cache() const { return _vwc.load(std::memory_order_relaxed) != 0; }
    // When the subsystem was made (ferryd's start): SMART power-on hours.
    uint64_t started_ns() const { return _started_ns; }

    // Control path (Connect / teardown), thread-safe.
    std::shared_ptr<controller> create_controller(const std::string& hostnqn, const std::array<uint8_t, 16>& hostid,
                                                  uint32_t kato_ms, std::shared_ptr<const ana_port> ana);
    std::shared_ptr<controller> find_controller(uint16_t cntlid);
    void remove_controller(uint16_t cntlid);
    size_t controller_count();
    std::vector<std::shared_ptr<controller>> controllers() const;
    bool ever_had_controller() const;
    // Removed from the target: no new controller (its live ones are dropped by the caller).
    void mark_removed();

    // Live changes (target's control path, serialized by the target). Each returns an empty
    // string when done, else why it was refused (nothing changed).
    std::string add_namespace(std::shared_ptr<ns> n);
    std::shared_ptr<ns> remove_namespace(uint32_t nsid);  // null if there is none
    void namespace_resized();                             // publishes a grown `blocks`
    uint32_t lowest_free_nsid() const;                    // 0 if none is free
    // Model/serial: refused once a controller was created. Returns why, or empty.
    std::string set_identity(const std::optional<std::string>& model, const std::optional<std::string>& serial);
    void set_allow_any_host(bool any);
    bool add_host(const std::string& hostnqn);     // false if listed already
    bool remove_host(const std::string& hostnqn);  // false if not listed (its keys go too)
    // Keys of a listed host (empty when none are set or the host is not listed); thread-safe.
    host_keys keys_of(const std::string& hostnqn) const;
    void set_keys(const std::string& hostnqn, const host_keys& keys);  // empty keys = none
    subsystem_config config() const;               // the current state, everything explicit
    void set_cntlid_range(uint16_t min, uint16_t max);  // new controllers' IDs (target::set_cntlid_range)

private:
    std::string admit_store(const ns& n, bool live) const;  // ONCS and VWC compatibility
    // Lowers ONCS to what `store` can do and sets VWC if it has a volatile write cache (before
    // any controller exists).
    void narrow_features(const nvme::block_store& store);

    std::string _nqn;
    bool _discovery;
    uint64_t _started_ns;

    mutable std::mutex _lock;  // controllers, hosts, identity
    std::string _serial;
    std::string _model;
    bool _allow_any;
    std::vector<std::string> _hosts;
    std::map<std::string, host_keys> _keys;  // of listed hosts only
    std::map<uint16_t, std::shared_ptr<controller>> _controllers;
    uint16_t _next_cntlid = 1;
    uint16_t _cntlid_min = 1, _cntlid_max = 0xFFEF;
    bool _ever_had_controller = false;
    bool _removed = false;

    mutable std::mutex _ns_lock;
    std::shared_ptr<const ns_table> _namespaces;
    std::atomic<uint64_t> _ns_generation{1};
    std::atomic<uint16_t> _oncs{0x01 | 0x04 | 0x08};
    std::atomic<int8_t> _vwc{-1};  // -1 no namespace yet (reported as a cache), 0 none, 1 present
};

// A host NQN for logs and controller names: the NQN, or "<empty host NQN>".
std::string host_label(const std::string& hostnqn);

// Deterministic 16-byte identifier from a string (namespace UUID/NGUID when not configured).
std::array<uint8_t, 16> derive_id(const std::string& text);

}  // namespace ferry::target
