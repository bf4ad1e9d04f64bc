// Placeholder until the status page lands.
#include "mgmt/status_page.hh"

namespace ferry::mgmt {

std::string_view status_page_html() {
    return "<!doctype html><title>ferry</title><p>The status page is not built yet; see /api/v1/stats.";
}

}  // namespace ferry::mgmt
