// What a target is built from. Filled by mgmt/ (from JSON) or by tests; validated there.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "transport/tls.hh"

namespace ferry::target {

enum class backend_kind { ram, null, file, pcie, rbd };

// rbd backend: which image, through which cluster and cephx user.
struct rbd_image_config {
    std::string pool;
    std::string image;
    std::string ceph_conf;  // "" = librados' default search
    std::string client;     // "" = "admin"
    bool operator==(const rbd_image_config&) const = default;
};

// Asymmetric Namespace Access state of an ANA group as seen through one listener (the values
// are the ANA log page's).
enum class ana_state : uint8_t {
    optimized = 0x1,
    non_optimized = 0x2,
    inaccessible = 0x3,
    persistent_loss = 0x4,
    change = 0xF,
};
inline constexpr uint32_t max_ana_groups = 32;  // ANAGRPMAX and NANAGRPID: groups 1..32
constexpr bool valid_ana_group(uint32_t group) { return group >= 1 && group <= max_ana_groups; }

struct namespace_config {
    uint32_t nsid = 1;
    backend_kind backend = backend_kind::ram;
    uint64_t size_bytes = 0;  // file: 0 = the file's or device's size
    uint32_t block_size = 4096;
    std::optional<std::array<uint8_t, 16>> uuid;  // derived from (NQN, NSID) when absent
    std::optional<std::array<uint8_t, 16>> nguid;  // derived from (NQN, NSID) when absent
    std::optional<std::array<uint8_t, 8>> eui64;   // reported as 0 (not set) when absent
    std::string path;                             // file backend: regular file or block device
    std::string pcie_address;                     // pcie backend: controller, "0000:00:04.0"
    uint32_t pcie_nsid = 0;                       // pcie backend: the namespace on that controller
    rbd_image_config rbd;                         // rbd backend
    uint32_t ana_group = 1;                       // ANAGRPID, 1..max_ana_groups
};

// Secrets of one host for one subsystem, as nvme-cli prints them; empty = not set. Never
// logged and never returned by the management API (which says only whether each is set).
struct host_keys {
    std::string dhchap_key;       // "DHHC-1:HH:...:" the host proves itself with (DH-HMAC-CHAP)
    std::string dhchap_ctrl_key;  // "DHHC-1:HH:...:" the controller proves itself with (bidirectional)
    std::string tls_psk;          // "NVMeTLSkey-1:HH:...:" configured PSK; set = the host must use TLS
    bool empty() const { return dhchap_key.empty() && dhchap_ctrl_key.empty() && tls_psk.empty(); }
    bool operator==(const host_keys&) const = default;
};

struct subsystem_config {
    std::string nqn;
    std::string serial;  // derived from the NQN when empty
    std::string model = "ferry";
    bool allow_any_host = false;
    std::vector<std::string> hosts;
    // Keys of listed hosts (by host NQN); a host without an entry has none.
    std::map<std::string, host_keys> keys;
    std::vector<namespace_config> namespaces;
};

struct listener_config {
    std::string address = "127.0.0.1";
    uint16_t port = 4420;
    transport::tls_mode tls = transport::tls_mode::none;  // discovery log TREQ/TSAS say it
    // ANA state by group through this listener; a group not listed is optimized.
    std::map<uint32_t, ana_state> ana{};
};

// A discovery log referral entry (SUBTYPE 01h): another discovery service a host may ask.
struct referral_config {
    std::string address;
    uint16_t port = 8009;
};

struct target_config {
    std::vector<listener_config> listeners;
    std::vector<subsystem_config> subsystems;
    std::vector<referral_config> referrals;
};

// Limits the target advertises; named in one place (cf. NVMET_MAX_QUEUE_SIZE).
inline constexpr uint16_t max_queue_entries = 256;  // CAP.MQES + 1, MAXCMD
inline constexpr uint16_t max_admin_queue_entries = 128;
inline constexpr uint16_t max_io_queues = 64;        // per controller
inline constexpr uint32_t max_nsid = 1024;           // Identify NN
inline constexpr uint32_t discovery_default_kato_ms = 120'000;
inline constexpr unsigned max_outstanding_aers = 4;  // AERL + 1
inline constexpr uint32_t kato_granularity_ms = 1000;  // Identify KAS 10 (100 ms units)

// A keep-alive timeout as the controller keeps and reports it: rounded up to the granularity
// Identify KAS advertises (nvmet: whole seconds; SPDK: KAS units), so Get Features gives the
// value that is enforced. 0 (none) stays 0.
constexpr uint32_t round_kato_ms(uint32_t ms) {
    const uint64_t up = (uint64_t{ms} + kato_granularity_ms - 1) / kato_granularity_ms * kato_granularity_ms;
    return up > UINT32_MAX ? UINT32_MAX / kato_granularity_ms * kato_granularity_ms : static_cast<uint32_t>(up);
}

}  // namespace ferry::target
