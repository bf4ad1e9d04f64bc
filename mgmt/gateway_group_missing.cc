// ferry built without librados: a gateway group is refused with the reason.
#include <stdexcept>

#include "mgmt/gateway_group.hh"

namespace ferry::mgmt {

std::unique_ptr<gateway_group> make_gateway_group(const gateway_config& cfg, target::target&) {
    throw std::runtime_error("gateway group " + cfg.group +
                             ": ferry was built without librados (apt-get install librados-dev librbd-dev)");
}

}  // namespace ferry::mgmt
