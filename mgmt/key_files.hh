// Host keys (DH-HMAC-CHAP secrets, TLS PSKs) on disk: read from files only their owner can read,
// and ferryd's own key directory next to the state file, which the state file references.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "mgmt/config.hh"

namespace ferry::mgmt {

// Overwrites the characters (OPENSSL_cleanse), then empties the string.
void wipe(std::string& s);

// `bytes` bytes from getrandom() as 2*bytes lower-case hex digits (key file names, the API
// token). Throws std::runtime_error when getrandom fails.
std::string random_hex(size_t bytes);

// Reads one key (trailing whitespace dropped). Refused, as ssh refuses a private key, when the
// file is not a regular file, is owned by another user than ferryd's, or group or others may
// read or write it; also when empty or over 4 KiB. Throws std::runtime_error naming the path
// and the reason (never the content).
std::string read_key_file(const std::string& path);

// ferryd's key directory, "keys" next to the state file (mode 0700, made when the first key is
// written): one file per key (mode 0600), named "<field>-<16 random hex digits>", written like
// the state file (temp file in the directory, fsync, rename, fsync of the directory). A file is
// never rewritten: a new key gets a new file, so the state file always references complete
// files. Files of keys the state file no longer references are deleted after it was written.
// Used by the API thread only (under its change lock).
class key_store {
public:
    explicit key_store(const std::string& state_file);
    const std::string& directory() const { return _dir; }

    // Keys ferryd loaded at startup: those whose file lies in the key directory are adopted
    // (kept as they are and deleted once no longer referenced); keys from elsewhere (inline, or
    // an operator's files) are copied into the key directory by the next prepare().
    void adopt(const target::target_config& cfg, const std::vector<key_file_ref>& refs);

    // Every key of `cfg` in a file of the key directory, writing those that have none yet.
    // Throws std::runtime_error (the files written by this call are removed again).
    key_file_map prepare(const target::target_config& cfg);
    // The state file referencing `files` was written: they are the current set; every other
    // key file of the directory is deleted.
    void committed(const key_file_map& files);
    // The state file could not be written: the files prepare() wrote for `files` go.
    void abandoned(const key_file_map& files);

private:
    struct known_file {
        std::string rel_path;         // "keys/NAME"
        std::vector<uint8_t> digest;  // SHA-256 of the key, to notice a rotation
    };
    using key_id = std::tuple<std::string, std::string, std::string>;  // subsystem, host, field
    std::string _state_dir, _dir;
    std::map<key_id, known_file> _known, _pending;
    std::vector<std::string> _written;  // rel paths written by the last prepare()

    void ensure_directory();
    void delete_unreferenced(const key_file_map& keep);
};

}  // namespace ferry::mgmt
