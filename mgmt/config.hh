// JSON configuration of ferryd: parsing and validation into target::target_config.
#pragma once

#include <stdexcept>
#include <string>

#include "target/config.hh"

namespace ferry::mgmt {

// A configuration problem: "FILE: /json/path: what is wrong".
class config_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Parses and validates `text`; `origin` names the source in error messages.
target::target_config parse_config(const std::string& text, const std::string& origin);
target::target_config load_config_file(const std::string& path);

// Memory that RAM namespaces may take, all together: a host can write every block of one.
struct ram_budget {
    uint64_t bytes = 0;
    std::string origin;  // how it was set, for the error: "--max-ram-mib 1024", "physical memory ..."
};
// The default: physical memory minus a reserve for the system (1/16 of it, at least 1 GiB)
// minus `pool_bytes` (the reactors' buffer pools).
ram_budget default_ram_budget(uint64_t pool_bytes);
// Throws config_error ("FILE: /subsystems/I/namespaces/J/size: ...") at the first RAM
// namespace that takes the sum of RAM namespaces beyond `budget`. `cfg` in the order of
// the file, as parse_config() returns it.
void check_ram_budget(const target::target_config& cfg, const ram_budget& budget, const std::string& origin);

// "1GiB", "512MiB", "4096" (bytes) -> bytes; throws std::invalid_argument.
uint64_t parse_size(const std::string& s);

}  // namespace ferry::mgmt
