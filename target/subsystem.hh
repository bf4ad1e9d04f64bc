// Subsystems, their namespaces, allowed hosts and live controllers.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nvme/block_queue.hh"
#include "target/config.hh"
#include "target/stats.hh"

namespace ferry::target {

class subsystem;

struct ns {
    uint32_t nsid = 0;
    std::unique_ptr<nvme::block_store> store;
    uint64_t blocks = 0;
    uint32_t block_size = 0;
    uint8_t lbads = 0;  // log2(block_size)
    std::array<uint8_t, 16> uuid{};
    std::array<uint8_t, 16> nguid{};
    std::array<uint8_t, 8> eui64{};
    std::unique_ptr<ns_stats> stats = std::make_unique<ns_stats>();  // SMART counters, all queues
};

// Controller state. Registers, features and AERs are touched only on the admin queue's
// reactor; the atomics are shared with I/O queues on other reactors.
class controller {
public:
    controller(subsystem& subsys, uint16_t cntlid, std::string hostnqn, std::array<uint8_t, 16> hostid,
               uint32_t kato_ms);

    subsystem& subsys;
    const uint16_t cntlid;
    const std::string hostnqn;
    const std::array<uint8_t, 16> hostid;

    // admin-queue owned
    uint32_t cc = 0;
    uint32_t csts = 0;
    uint32_t kato_ms;
    uint32_t aen_config = 0;
    std::atomic<uint16_t> granted_io_queues{0};  // after Set Features Number of Queues (1-based count)
    std::vector<uint32_t> pending_events;  // AEN results waiting for an AER
    std::vector<uint32_t> changed_nsids;   // for log page 04h

    // shared
    std::atomic<uint64_t> last_traffic_ns{0};
    std::atomic<bool> dead{false};
    std::atomic<bool> ready{false};  // CSTS.RDY, read by I/O Connect
    error_log errors;                // commands completed with an error, on any of its queues

    std::string name() const;  // "controller 1 of nqn... (host nqn...)", host_label() of an empty NQN

    // Returns false if qid is already connected (I/O queues; control path, locked).
    bool claim_queue(uint16_t qid);
    void release_queue(uint16_t qid);

private:
    std::mutex _queue_lock;
    std::vector<bool> _queues;
};

class subsystem {
public:
    subsystem(const subsystem_config& cfg, bool discovery);

    const std::string& nqn() const { return _nqn; }
    bool is_discovery() const { return _discovery; }
    const std::string& serial() const { return _serial; }
    const std::string& model() const { return _model; }
    bool host_allowed(const std::string& hostnqn) const;
    // Namespaces by NSID (immutable after start, so readable from any reactor).
    const std::map<uint32_t, ns>& namespaces() const { return _namespaces; }
    const ns* find_ns(uint32_t nsid) const;
    // Largest transfer per command (Identify MDTS): the transport's limit or a store's, if lower.
    uint32_t max_transfer_bytes() const { return _max_transfer; }
    // Identify ONCS: the optional commands every namespace's store carries out.
    uint16_t optional_commands() const { return _oncs; }
    // When the subsystem was made (ferryd's start): SMART power-on hours.
    uint64_t started_ns() const { return _started_ns; }

    // Control path (Connect / teardown), thread-safe.
    std::shared_ptr<controller> create_controller(const std::string& hostnqn, const std::array<uint8_t, 16>& hostid,
                                                  uint32_t kato_ms);
    std::shared_ptr<controller> find_controller(uint16_t cntlid);
    void remove_controller(uint16_t cntlid);
    size_t controller_count();

private:
    std::string _nqn;
    std::string _serial;
    std::string _model;
    bool _discovery;
    bool _allow_any;
    std::vector<std::string> _hosts;
    std::map<uint32_t, ns> _namespaces;
    uint32_t _max_transfer = 1u << 20;
    uint16_t _oncs = 0x01 | 0x04 | 0x08;
    uint64_t _started_ns;

    std::mutex _lock;
    std::map<uint16_t, std::shared_ptr<controller>> _controllers;
    uint16_t _next_cntlid = 1;
};

// A host NQN for logs and controller names: the NQN, or "<empty host NQN>".
std::string host_label(const std::string& hostnqn);

// Deterministic 16-byte identifier from a string (namespace UUID/NGUID when not configured).
std::array<uint8_t, 16> derive_id(const std::string& text);

}  // namespace ferry::target
