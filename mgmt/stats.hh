// Counters for the management API: GET /api/v1/stats (JSON) and GET /metrics (Prometheus text
// exposition format), both read from the same counters without stopping the I/O path.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ferry::target {
class target;
}
namespace ferry::transport {
class reactor;
}

namespace ferry::mgmt {

// What the counters are read from: the target and the reactors of this ferryd.
struct runtime {
    target::target& tgt;
    std::vector<transport::reactor*> reactors;
};

// Per subsystem, namespace, controller and queue: commands, bytes read and written, errors by
// status, latency histogram; per reactor: connections, busy share, pool chunks in use.
nlohmann::json stats_json(const runtime& rt);
// The same counters in Prometheus text exposition format 0.0.4.
std::string metrics_text(const runtime& rt);

}  // namespace ferry::mgmt
