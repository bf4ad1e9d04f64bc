#include "mgmt/key_files.hh"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>

#include "mgmt/api.hh"

namespace ferry::mgmt {
namespace {
std::string errno_text(int err) {
    return std::strerror(err);
}

std::vector<uint8_t> sha256(const std::string& s) {
    std::vector<uint8_t> d(32);
    unsigned len = 0;
    if (!EVP_Digest(s.data(), s.size(), d.data(), &len, EVP_sha256(), nullptr))
        throw std::runtime_error("SHA-256 failed");
    return d;
}

std::string dir_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

// Names of the files key_store writes ("dhchap_key-<16 hex>"): only those are ever deleted.
bool own_file_name(const std::string& name) {
    for (const char* f : host_key_fields) {
        const std::string prefix = std::string(f) + "-";
        if (name.size() == prefix.size() + 16 && name.starts_with(prefix) &&
            name.find_first_not_of("0123456789abcdef", prefix.size()) == std::string::npos)
            return true;
    }
    return false;
}

// Why a key file or the key directory is refused as ssh refuses a private key: another owner
// than ferryd's user, or group or others may get `access`; "" when it is private.
std::string not_private(const struct stat& st, const char* access, const char* fix) {
    if (st.st_uid != ::geteuid())
        return "owned by uid " + std::to_string(st.st_uid) + ", not by ferryd's uid " + std::to_string(::geteuid()) +
               "; refused (chown it)";
    if (!(st.st_mode & 077)) return "";
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    return std::string("mode ") + mode + " lets group or others " + access + "; refused (" + fix + ")";
}

// fsync of a directory after an entry was added or removed; best effort (the change is made).
void sync_directory(const std::string& dir) {
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    ::fsync(dfd);
    ::close(dfd);
}

std::string normal(const std::string& path) {
    return std::filesystem::absolute(path).lexically_normal().string();
}
}  // namespace

std::string random_hex(size_t bytes) {
    std::vector<uint8_t> raw(bytes);
    size_t got = 0;
    while (got < bytes) {
        const ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw std::runtime_error("getrandom: " + errno_text(errno));
        got += size_t(n);
    }
    std::string out = hex_text(raw);
    OPENSSL_cleanse(raw.data(), raw.size());
    return out;
}

void wipe(std::string& s) {
    if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
    s.clear();
}

std::string read_key_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) throw std::runtime_error("key file " + path + ": cannot open: " + errno_text(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error("key file " + path + ": cannot stat: " + errno_text(err));
    }
    auto refuse = [&](const std::string& why) {
        ::close(fd);
        throw std::runtime_error("key file " + path + ": " + why);
    };
    if (!S_ISREG(st.st_mode)) refuse("not a regular file");
    if (const std::string why = not_private(st, "read or write it", "chmod 600 it"); !why.empty()) refuse(why);
    if (st.st_size > 4096) refuse("larger than 4 KiB; not a key");
    std::string text(size_t(st.st_size) + 1, '\0');
    size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            wipe(text);
            refuse("cannot read: " + errno_text(err));
        }
        if (n == 0) break;
        done += size_t(n);
    }
    ::close(fd);
    if (done > 4096) {
        wipe(text);
        throw std::runtime_error("key file " + path + ": larger than 4 KiB; not a key");
    }
    text.resize(done);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    if (text.empty()) throw std::runtime_error("key file " + path + ": empty");
    std::string key = text;  // the exact size; the buffer is wiped
    wipe(text);
    return key;
}

key_store::key_store(const std::string& state_file) : _state_dir(dir_of(state_file)), _dir(_state_dir + "/keys") {}

void key_store::adopt(const target::target_config& cfg, const std::vector<key_file_ref>& refs) {
    const std::string prefix = normal(_dir) + "/";
    for (const auto& r : refs) {
        const std::string p = normal(r.path);
        if (!p.starts_with(prefix) || !own_file_name(p.substr(prefix.size()))) continue;
        for (const auto& s : cfg.subsystems) {
            if (s.nqn != r.subnqn) continue;
            auto k = s.keys.find(r.hostnqn);
            if (k == s.keys.end()) continue;
            const std::string& key = key_field(k->second, r.field);
            if (!key.empty()) _known[{r.subnqn, r.hostnqn, r.field}] = {"keys/" + p.substr(prefix.size()), sha256(key)};
        }
    }
}

void key_store::ensure_directory() {
    if (::mkdir(_dir.c_str(), 0700) == 0) {
        sync_directory(_state_dir);
        return;
    }
    if (errno != EEXIST) throw std::runtime_error("key directory " + _dir + ": cannot create: " + errno_text(errno));
    struct stat st {};
    if (::lstat(_dir.c_str(), &st) != 0)
        throw std::runtime_error("key directory " + _dir + ": cannot stat: " + errno_text(errno));
    if (!S_ISDIR(st.st_mode)) throw std::runtime_error("key directory " + _dir + ": not a directory");
    if (const std::string why = not_private(st, "in", "chmod 700 it"); !why.empty())
        throw std::runtime_error("key directory " + _dir + ": " + why);
}

key_file_map key_store::prepare(const target::target_config& cfg) {
    key_file_map out;
    _pending.clear();
    _written.clear();
    try {
        for (const auto& s : cfg.subsystems) {
            for (const auto& [host, keys] : s.keys) {
                for (const char* field : host_key_fields) {
                    const std::string& key = key_field(keys, field);
                    if (key.empty()) continue;
                    const key_id id{s.nqn, host, field};
                    std::vector<uint8_t> digest = sha256(key);
                    auto it = _known.find(id);
                    known_file f;
                    if (it != _known.end() && it->second.digest == digest) {
                        f = it->second;
                    } else {
                        if (_written.empty()) ensure_directory();
                        const std::string name = std::string(field) + "-" + random_hex(8);
                        write_file_atomically(_dir + "/" + name, key + "\n", "key file");
                        f = {"keys/" + name, std::move(digest)};
                        _written.push_back(f.rel_path);
                    }
                    out[{s.nqn, host}][field] = f.rel_path;
                    _pending[id] = std::move(f);
                }
            }
        }
    } catch (...) {
        abandoned(out);
        throw;
    }
    return out;
}

void key_store::committed(const key_file_map& files) {
    _known = std::move(_pending);
    _pending.clear();
    _written.clear();
    delete_unreferenced(files);
}

void key_store::abandoned(const key_file_map&) {
    for (const auto& rel : _written) ::unlink((_state_dir + "/" + rel).c_str());
    _written.clear();
    _pending.clear();
}

void key_store::delete_unreferenced(const key_file_map& keep) {
    std::set<std::string> referenced;
    for (const auto& [who, fields] : keep)
        for (const auto& [field, rel] : fields) referenced.insert(rel.substr(rel.rfind('/') + 1));
    DIR* d = ::opendir(_dir.c_str());
    if (!d) return;  // no directory: no key was ever written
    bool removed = false;
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (!own_file_name(name) || referenced.count(name)) continue;
        if (::unlink((_dir + "/" + name).c_str()) == 0) removed = true;
    }
    ::closedir(d);
    if (removed) sync_directory(_dir);
}

}  // namespace ferry::mgmt
