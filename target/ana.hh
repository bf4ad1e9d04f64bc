// Asymmetric Namespace Access (NVMe base spec 2.x 8.1.1): the state of each ANA group as seen
// through one listener, shared by the controllers whose admin queue connected through it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

#include "nvme/spec.hh"
#include "target/config.hh"

namespace ferry::target {

// One listener's ANA states by group (index = ANAGRPID; 0 unused). Written by the control path
// (before the target's ANA change count moves), read by admin queues (log page 0Ch) and by I/O
// queues when that count moved.
class ana_port {
public:
    ana_port() {
        for (auto& s : _states) s.store(static_cast<uint8_t>(ana_state::optimized), std::memory_order_relaxed);
    }
    ana_state state(uint32_t group) const {
        if (!valid_ana_group(group)) return ana_state::inaccessible;
        return static_cast<ana_state>(_states[group].load(std::memory_order_acquire));
    }
    void set(uint32_t group, ana_state s) { _states[group].store(static_cast<uint8_t>(s), std::memory_order_release); }

private:
    std::array<std::atomic<uint8_t>, max_ana_groups + 1> _states;
};

// The status of an I/O command on a path whose group is in state `s`; 0 if it may be served.
// Path related (SCT 3h) without DNR, so that the host retries it on another path.
constexpr uint16_t ana_io_status(ana_state s) {
    switch (s) {
        case ana_state::optimized:
        case ana_state::non_optimized:
            return 0;
        case ana_state::persistent_loss:
            return nvme::sc::ana_persistent_loss;
        case ana_state::change:
            return nvme::sc::ana_transition;
        case ana_state::inaccessible:
            break;
    }
    return nvme::sc::ana_inaccessible;
}

// ANA Change is transitional (base spec 8.1.1.5): Linux arms its ANATT timer (2 x ANATT) when a
// group shows it and resets the controller if it is still there at expiry, so a group left in
// change would reset every controller of its listener every 20 s. It is refused as a state to
// set (config file, state file, API); only a gateway group moves a group through it, for at
// most half of ANATT (target::set_managed_ana_state).
constexpr bool ana_state_settable(ana_state s) {
    return s != ana_state::change;
}
inline constexpr std::string_view ana_change_refusal =
    "'change' cannot be set: ANA Change is a transitional state and a Linux host resets its "
    "controllers when a group stays in it past twice ANATT (10 s); set the state the group is "
    "moving to (optimized, non_optimized, inaccessible, persistent_loss)";

// The names the management API and ferryctl use ("change" only in the refusal).
inline constexpr std::array<std::pair<ana_state, std::string_view>, 5> ana_state_names{{
    {ana_state::optimized, "optimized"},
    {ana_state::non_optimized, "non_optimized"},
    {ana_state::inaccessible, "inaccessible"},
    {ana_state::persistent_loss, "persistent_loss"},
    {ana_state::change, "change"},
}};
inline std::string_view ana_state_name(ana_state s) {
    for (const auto& [v, name] : ana_state_names)
        if (v == s) return name;
    return "?";
}
inline std::optional<ana_state> parse_ana_state(std::string_view name) {
    for (const auto& [v, n] : ana_state_names)
        if (n == name) return v;
    return std::nullopt;
}

}  // namespace ferry::target
