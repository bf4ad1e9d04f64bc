// GET /: one self-contained HTML status page (no external assets) that reads /api/v1/stats.
#pragma once

#include <string_view>

namespace ferry::mgmt {

std::string_view status_page_html();

}  // namespace ferry::mgmt
