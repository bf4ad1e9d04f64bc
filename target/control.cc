// Live changes of the target (control path). Placeholder bodies until the implementation
// lands: each refuses with change_errc::failed.
#include "target/target.hh"

namespace ferry::target {
namespace {
[[noreturn]] void not_built(const char* what) {
    throw change_error(change_errc::failed, std::string(what) + ": live changes are not built yet");
}
}  // namespace

void target::add_subsystem(const subsystem_config&) { not_built("add subsystem"); }
void target::remove_subsystem(const std::string&) { not_built("remove subsystem"); }
void target::update_subsystem(const std::string&, const subsystem_patch&) { not_built("update subsystem"); }
uint32_t target::add_namespace(const std::string&, namespace_config) { not_built("add namespace"); }
void target::remove_namespace(const std::string&, uint32_t) { not_built("remove namespace"); }
void target::resize_namespace(const std::string&, uint32_t, uint64_t) { not_built("resize namespace"); }
void target::add_host(const std::string&, const std::string&) { not_built("add host"); }
void target::remove_host(const std::string&, const std::string&) { not_built("remove host"); }
void target::drop_controller(const std::string&, uint16_t) { not_built("drop controller"); }
void target::add_listener(const listener_config&) { not_built("add listener"); }
void target::remove_listener(const std::string&, uint16_t) { not_built("remove listener"); }
void target::add_referral(const referral_config&) { not_built("add referral"); }
void target::remove_referral(const std::string&, uint16_t) { not_built("remove referral"); }
target_config target::current_config() const { not_built("current config"); }
std::vector<controller_view> target::controllers(const std::string&) const { not_built("controllers"); }

}  // namespace ferry::target
