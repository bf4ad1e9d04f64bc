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

// "1GiB", "512MiB", "4096" (bytes) -> bytes; throws std::invalid_argument.
uint64_t parse_size(const std::string& s);

}  // namespace ferry::mgmt
