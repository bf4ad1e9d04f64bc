// The NVMe-oF target: subsystems (plus the discovery subsystem), and the factory that gives
// each new transport connection its queue handler.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "target/auth.hh"
#include "target/config.hh"
#include "target/ns_reaper.hh"
#include "target/subsystem.hh"
#include "transport/connection.hh"

namespace ferry::target {

// Why a control-path change was refused. Nothing was changed when one is thrown.
enum class change_errc {
    invalid,    // the request makes no sense (e.g. shrinking a namespace): HTTP 422
    not_found,  // no such subsystem, namespace, host, controller, listener or referral: 404
    conflict,   // it exists already (NQN, NSID, host, listener): 409
    failed,     // it should have worked but did not (a store could not be made): 500
};
class change_error : public std::runtime_error {
public:
    change_error(change_errc code, const std::string& what) : std::runtime_error(what), code(code) {}
    change_errc code;
};

// PATCH of a subsystem; model and serial only while no host has ever connected to it.
struct subsystem_patch {
    std::optional<bool> allow_any_host;
    std::optional<std::string> model;
    std::optional<std::string> serial;
};

// What the management API shows of a live controller.
struct queue_view {
    uint16_t qid = 0;
    uint16_t depth = 0;       // queue entries (SQSIZE + 1)
    unsigned reactor = 0;     // reactor (thread) serving its connection
    uint64_t connection = 0;  // transport connection id, as in the logs
};
struct controller_view {
    uint16_t cntlid = 0;
    std::string hostnqn;
    std::array<uint8_t, 16> hostid{};
    std::string peer;  // "addr:port" of its admin queue connection
    uint32_t kato_ms = 0;
    std::vector<queue_view> queues;  // admin queue (qid 0) first, then I/O queues by qid
};

class target final : public transport::handler_factory {
public:
    // Builds subsystems and namespaces; throws std::runtime_error if a store cannot be made.
    explicit target(const target_config& cfg);

    // The subsystem of that NQN (the discovery subsystem for its NQN), or null. Thread-safe.
    std::shared_ptr<subsystem> find_subsystem(std::string_view nqn) const;
    subsystem& discovery() { return *_discovery; }
    const std::shared_ptr<subsystem>& discovery_subsystem() const { return _discovery; }
    // The current subsystems (a copy of the list; thread-safe).
    std::vector<std::shared_ptr<subsystem>> subsystems() const;

    // ---- Control path: live changes (the management API's REST thread; thread-safe, serialized
    // by one control lock; never called on a reactor). Each either makes the whole change and
    // returns, or throws change_error and changes nothing. The I/O path sees the change without
    // taking a lock (see target/README.md). Controllers of a changed subsystem get the NVMe
    // notices the spec names (Namespace Attribute Changed AEN and log page 04h; discovery log
    // change AEN and a new GENCTR for listener, referral, subsystem and host changes).

    // Conflict if the NQN exists. Builds every namespace's store (failed if one cannot be made).
    void add_subsystem(const subsystem_config& cfg);
    // Closes every connection of its controllers (all queues, on each queue's next 100 ms timer
    // tick), then drops it once they are gone; its stores are closed after their commands in
    // flight completed.
    void remove_subsystem(const std::string& nqn);
    void update_subsystem(const std::string& nqn, const subsystem_patch& patch);
    // cfg.nsid 0 = the lowest free NSID. Returns the NSID. Every queue binds it at its next
    // command: a RAM, null or file namespace is usable at once; an SSD's answers Namespace Not
    // Ready on a queue until its hardware queue is set up there.
    uint32_t add_namespace(const std::string& nqn, namespace_config cfg);
    // New commands for it fail with Invalid Namespace at once; commands in flight complete
    // normally; the store is closed before this returns, unless a queue has not let go within
    // the release timeout (30 s): then `failed`, and the last holder closes it.
    void remove_namespace(const std::string& nqn, uint32_t nsid);
    // Grows a ram or file namespace (invalid: shrinking, other backends).
    void resize_namespace(const std::string& nqn, uint32_t nsid, uint64_t size_bytes);
    // With its keys (none by default); invalid if a key does not parse.
    void add_host(const std::string& nqn, const std::string& hostnqn, const host_keys& keys = {});
    // Replaces the host's keys (rotation; empty fields = not set). Controllers already
    // authenticated keep running; new connections and re-authentications use the new keys.
    void set_host_keys(const std::string& nqn, const std::string& hostnqn, const host_keys& keys);
    // Closes the connections of that host's controllers of the subsystem (next timer tick).
    void remove_host(const std::string& nqn, const std::string& hostnqn);
    // Closes every connection of that controller (all its queues, next timer tick).
    void drop_controller(const std::string& nqn, uint16_t cntlid);
    // ANA (target/ana.hh): the state of `group` (1..max_ana_groups) through the listener
    // address:port, for every subsystem; a namespace's group. Each moves the ANA change count
    // and sends the ANA change notice (AEN, log page 0Ch) to the controllers whose view changed.
    // I/O queues see the new state at their next command.
    void set_ana_state(const std::string& address, uint16_t port, uint32_t group, ana_state state);
    void set_namespace_ana_group(const std::string& nqn, uint32_t nsid, uint32_t group);
    // A gateway group (mgmt/gateway_group) runs these groups' states: set_ana_state refuses
    // them (conflict, naming `manager`), and set_managed_ana_state sets one on every listener,
    // `change` included (the gateway moves a group through it while it takes the group's
    // locks, bounded well inside ANATT). Not written to cfg.ana: a restart starts a managed group
    // inaccessible until its gateway has the locks, whatever the state file says.
    void set_ana_manager(std::vector<uint32_t> groups, std::string manager);
    void set_managed_ana_state(uint32_t group, ana_state state, bool log = true);
    ana_state managed_ana_state(uint32_t group) const;
    // What the REST API shows of a gateway group's live states (they are not in the
    // configuration): the manager, and each managed group a namespace uses with its state.
    struct managed_ana_view {
        std::string manager;  // empty: no gateway group
        std::map<uint32_t, ana_state> groups;
    };
    managed_ana_view managed_ana() const;
    // CNTLIDs this target gives its controllers (every subsystem, also those added later):
    // gateways of one group serve one subsystem and a host's controllers through them must not
    // share an ID (Linux refuses a path whose CNTLID another path of the subsystem has).
    // Default 1..0xFFEF. Set before serving.
    void set_cntlid_range(uint16_t min, uint16_t max);
    // The ANA log page's change count: moves (release) after every state or membership change.
    const std::atomic<uint64_t>& ana_change_count() const { return _ana_change_count; }
    // The ANA states of the listener a connection came through: the listener of its local
    // address and port, else one of its port on a wildcard address, else all optimized.
    std::shared_ptr<const ana_port> ana_port_for(const transport::connection_info& via) const;

    // The discovery log's view only; the sockets are the acceptor's (mgmt/ does both).
    void add_listener(const listener_config& l);
    void remove_listener(const std::string& address, uint16_t port);
    void add_referral(const referral_config& r);
    void remove_referral(const std::string& address, uint16_t port);
    // The current state in configuration form: every NSID, UUID and NGUID explicit, so that a
    // restart from it serves the same namespaces.
    target_config current_config() const;
    // Live controllers of one subsystem (not_found if there is none of that NQN).
    std::vector<controller_view> controllers(const std::string& nqn) const;

    std::unique_ptr<transport::queue_handler> make_handler(transport::connection& conn) override;
    // The configured PSK of a listed host of `subnqn`; for the discovery NQN, the host's PSK
    // of any subsystem (the first that has one).
    std::optional<transport::configured_psk> find_tls_psk(const std::string& hostnqn,
                                                          const std::string& subnqn) override;

    // The discovery log page for `hostnqn`, as seen through a connection that reached
    // `local_addr` (used for listeners bound to a wildcard address).
    std::vector<uint8_t> discovery_log(const std::string& hostnqn, const transport::connection_info& via) const;
    uint64_t discovery_genctr() const { return _genctr.load(); }

    // How long remove_namespace waits for the I/O queues to let go of a namespace.
    void set_release_timeout_ms(uint32_t ms) { _release_timeout_ms = ms; }

    // DH-HMAC-CHAP: the DH groups the controller picks from what a host offers, first match
    // wins (default ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144, ffdhe8192, null). Set before
    // serving; read by the reactors.
    void set_dhchap_dhgroups(std::vector<uint8_t> ids) { _dhchap_dhgroups = std::move(ids); }
    const std::vector<uint8_t>& dhchap_dhgroups() const { return _dhchap_dhgroups; }
    auth::backoff& auth_backoff() { return _auth_backoff; }

    // C2HData SUCCESS (a successful read ends with its data PDU, no CapsuleResp): NVMe/TCP
    // allows it only on a queue whose host disabled SQ flow control (Connect CATTR bit 2), as
    // Linux nvmet does. `always` also uses it on I/O queues that keep flow control, as SPDK's
    // target does by default: those CQEs' SQHD is never sent, which the Linux and SPDK hosts do
    // not read over TCP, and it spares the SPDK host a second PDU per read (whose 4144-byte
    // stride against its 8 x 4120-byte receive buffer halves its 4 KiB read rate). Set before
    // serving.
    enum class c2h_success_policy { sq_flow_disabled, always };
    void set_c2h_success(c2h_success_policy p) { _c2h_success = p; }
    c2h_success_policy c2h_success() const { return _c2h_success; }

private:
    struct listener_entry {
        listener_config cfg;
        uint16_t portid = 0;            // stable Port ID of its discovery log entries
        std::shared_ptr<ana_port> ana;  // its ANA states (cfg.ana says the same)
    };
    listener_entry make_listener_entry(const listener_config& l);  // under _lock
    // After a namespace joined, left or changed group: a new ANA log for its controllers.
    void notify_ana_membership(subsystem& s);
    std::shared_ptr<subsystem> find_locked(std::string_view nqn) const;
    // After a discovery log change (which bumped _genctr under _lock with the change itself, so
    // a reader never sees new entries with the old GENCTR): the AEN to discovery controllers.
    void notify_discovery_change();

    std::mutex _control_lock;  // serializes live changes (held while one waits for queues)
    mutable std::mutex _lock;  // the lists below; taken by Connect and discovery log builds
    std::vector<listener_entry> _listeners;
    std::vector<referral_config> _referrals;
    uint16_t _next_portid = 1;
    std::vector<std::shared_ptr<subsystem>> _subsystems;
    std::shared_ptr<subsystem> _discovery;
    std::atomic<uint64_t> _genctr{1};
    std::atomic<uint64_t> _ana_change_count{1};
    std::shared_ptr<ana_port> _unlisted_ana = std::make_shared<ana_port>();  // no listener matched
    std::atomic<uint32_t> _release_timeout_ms{30'000};
    std::vector<uint8_t> _dhchap_dhgroups{auth::dh_ffdhe2048, auth::dh_ffdhe3072, auth::dh_ffdhe4096,
                                          auth::dh_ffdhe6144, auth::dh_ffdhe8192, auth::dh_null};
    auth::backoff _auth_backoff;
    c2h_success_policy _c2h_success = c2h_success_policy::sq_flow_disabled;
    std::vector<uint32_t> _managed_ana_groups;  // written under _control_lock and _lock
    std::string _ana_manager;
    uint16_t _cntlid_min = 1, _cntlid_max = 0xFFEF;
    ns_reaper _reaper;  // removed namespaces still held by queues: closed off the reactors
};

}  // namespace ferry::target
