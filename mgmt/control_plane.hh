// What the REST API changes and reads: in ferryd the target (target/target.hh) plus the
// acceptor's listening sockets and the counters; in unit tests a model of them. Every call has
// the target's contract: it makes the whole change or throws target::change_error and changes
// nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "target/config.hh"
#include "target/target.hh"

namespace ferry::transport {
class acceptor;
class reactor;
}  // namespace ferry::transport

namespace ferry::mgmt {

class control_plane {
public:
    virtual ~control_plane() = default;
    virtual void add_subsystem(const target::subsystem_config& cfg) = 0;
    virtual void remove_subsystem(const std::string& nqn) = 0;
    virtual void update_subsystem(const std::string& nqn, const target::subsystem_patch& patch) = 0;
    virtual uint32_t add_namespace(const std::string& nqn, target::namespace_config cfg) = 0;
    virtual void remove_namespace(const std::string& nqn, uint32_t nsid) = 0;
    virtual void resize_namespace(const std::string& nqn, uint32_t nsid, uint64_t size_bytes) = 0;
    // With its keys (none: empty); invalid if a key does not parse.
    virtual void add_host(const std::string& nqn, const std::string& hostnqn, const target::host_keys& keys) = 0;
    // Replaces a listed host's keys (rotation; empty fields: not set).
    virtual void set_host_keys(const std::string& nqn, const std::string& hostnqn, const target::host_keys& keys) = 0;
    virtual void remove_host(const std::string& nqn, const std::string& hostnqn) = 0;
    virtual void drop_controller(const std::string& nqn, uint16_t cntlid) = 0;
    // Binds the socket and serves it (and shows it in the discovery log).
    virtual void add_listener(const target::listener_config& l) = 0;
    virtual void remove_listener(const std::string& address, uint16_t port) = 0;
    // ANA: a group's state through a listener; a namespace's group (target/target.hh).
    virtual void set_ana_state(const std::string& address, uint16_t port, uint32_t group, target::ana_state s) = 0;
    virtual void set_namespace_ana_group(const std::string& nqn, uint32_t nsid, uint32_t group) = 0;
    // A gateway group's live ANA states (none without one), shown with the listeners.
    virtual target::target::managed_ana_view managed_ana() const { return {}; }
    virtual void add_referral(const target::referral_config& r) = 0;
    virtual void remove_referral(const std::string& address, uint16_t port) = 0;
    virtual target::target_config current_config() const = 0;
    virtual std::vector<target::controller_view> controllers(const std::string& nqn) const = 0;
    virtual nlohmann::json stats() const = 0;  // GET /api/v1/stats
    virtual std::string metrics() const = 0;   // GET /metrics
};

// ferryd's: the target, the acceptor that owns the listening sockets, and the reactors whose
// counters /stats and /metrics read.
std::unique_ptr<control_plane> make_target_control_plane(target::target& tgt, transport::acceptor& acc,
                                                         std::vector<transport::reactor*> reactors);

}  // namespace ferry::mgmt
