// The NVMe-oF target: subsystems (plus the discovery subsystem), and the factory that gives
// each new transport connection its queue handler.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "target/config.hh"
#include "target/subsystem.hh"
#include "transport/connection.hh"

namespace ferry::target {

class target final : public transport::handler_factory {
public:
    // Builds subsystems and namespaces; throws std::runtime_error if a store cannot be made.
    explicit target(const target_config& cfg);

    subsystem* find_subsystem(std::string_view nqn);
    subsystem& discovery() { return *_discovery; }
    const std::vector<std::unique_ptr<subsystem>>& subsystems() const { return _subsystems; }

    std::unique_ptr<transport::queue_handler> make_handler(transport::connection& conn) override;

    // The discovery log page for `hostnqn`, as seen through a connection that reached
    // `local_addr` (used for listeners bound to a wildcard address).
    std::vector<uint8_t> discovery_log(const std::string& hostnqn, const transport::connection_info& via) const;
    uint64_t discovery_genctr() const { return _genctr.load(); }

private:
    std::vector<listener_config> _listeners;
    std::vector<std::unique_ptr<subsystem>> _subsystems;
    std::unique_ptr<subsystem> _discovery;
    std::atomic<uint64_t> _genctr{1};
};

}  // namespace ferry::target
