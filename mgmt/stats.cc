// Placeholder until the counters land: empty documents.
#include "mgmt/stats.hh"

namespace ferry::mgmt {

nlohmann::json stats_json(const runtime&) {
    return nlohmann::json::object();
}
std::string metrics_text(const runtime&) {
    return {};
}

}  // namespace ferry::mgmt
