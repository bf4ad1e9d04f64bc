// A gateway group: ferryd processes on several machines serve one subsystem of Ceph RBD images,
// each through its own listeners, coordinated through one RADOS object (no extra service).
// Each ANA group has one owning gateway, which holds its images' managed exclusive locks and
// reports the group optimized; every other gateway reports it inaccessible. A gateway whose
// heartbeat stops is taken over by a survivor, which breaks the locks (Ceph blocklists the old
// holder, so its late writes fail) before it reports the group optimized. See
// deploy/gateway-group.md for the failure model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace ferry::target {
class target;
}

namespace ferry::mgmt {

// ferryd --gateway FILE: this gateway's place in its group (read at start, never written).
struct gateway_config {
    std::string group;                        // the group's name: its RADOS object is "ferry.gateway_group.<group>"
    std::string name;                         // this gateway, unique in the group
    std::string subsystem;                    // the NQN the group serves (in ferryd's configuration)
    uint32_t ana_group = 0;                   // the ANA group this gateway owns while it is up (its "home")
    uint16_t cntlid_min = 0, cntlid_max = 0;  // this gateway's controller IDs; disjoint in a group
    std::string pool;                         // where the group object lives
    std::string ceph_conf;                    // "" = librados' default search
    std::string client = "admin";             // cephx user, without "client."
    unsigned heartbeat_ms = 1000;             // how often the gateway beats and looks
    unsigned dead_after_ms = 4000;            // a peer whose beat has not moved this long is dead
};

// Parses and checks the file's JSON text; throws config_error naming `origin` and the field.
gateway_config parse_gateway_config(const std::string& text, const std::string& origin);
gateway_config load_gateway_config(const std::string& path);

class gateway_group {
public:
    virtual ~gateway_group() = default;
    // Starts the coordination thread (the target serves meanwhile; the group's ANA groups stay
    // inaccessible until this gateway holds their locks).
    virtual void start() = 0;
    // Hands the groups it owns to a live peer (or releases their locks), marks itself stopped in
    // the group object and joins the thread. Call before the reactors stop.
    virtual void stop() = 0;
};

// Checks the subsystem (every namespace an rbd image), connects to the cluster, registers the
// gateway (refused if its name, CNTLID range or ANA group clashes with another registered
// gateway's), sets the target's CNTLID range and takes every ANA group's state over (all
// inaccessible). Call from an unpinned thread before the listeners accept (librados starts
// threads that inherit its CPU affinity). Throws std::runtime_error saying what is wrong.
std::unique_ptr<gateway_group> make_gateway_group(const gateway_config& cfg, target::target& tgt);

}  // namespace ferry::mgmt
