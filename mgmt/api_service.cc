// Routes, authentication, validation, changes and persistence of the REST API. Everything here
// runs on the API thread (never a reactor); a change holds _change_lock from validation until
// the state file is written, so changes are applied and persisted one at a time.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

#include "env/pci.hh"
#include "mgmt/api.hh"
#include "mgmt/status_page.hh"
#include "target/ana.hh"

namespace ferry::mgmt {
namespace {
using json = nlohmann::json;
using target::change_errc;
using target::change_error;

const char* body_origin = "request body";

// An answer other than success, thrown by a handler.
struct http_error : std::runtime_error {
    http_error(unsigned status, const std::string& what, std::string path = {}, json extra = json::object())
        : std::runtime_error(what), status(status), path(std::move(path)), extra(std::move(extra)) {}
    unsigned status;
    std::string path;
    json extra;
};

api_response json_response(unsigned status, const json& body) {
    api_response r;
    r.status = status;
    r.body = body.dump(2) + "\n";
    return r;
}

api_response no_content() {
    api_response r;
    r.status = 204;
    r.content_type.clear();
    return r;
}

api_response error_response(unsigned status, const std::string& message, const std::string& path = {},
                            const json& extra = json::object()) {
    json body = extra;
    body["error"] = message;
    if (!path.empty()) body["path"] = path;
    return json_response(status, body);
}

unsigned status_of(change_errc c) {
    switch (c) {
        case change_errc::invalid:
            return 422;
        case change_errc::not_found:
            return 404;
        case change_errc::conflict:
            return 409;
        case change_errc::failed:
            return 500;
    }
    return 500;
}

std::string percent_decode(const std::string& s, bool& ok) {
    std::string out;
    ok = true;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        auto hex = [](char c) {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        if (i + 2 >= s.size()) {
            ok = false;
            return {};
        }
        const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
        if (hi < 0 || lo < 0) {
            ok = false;
            return {};
        }
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

std::vector<std::string> split_path(const std::string& path) {
    std::vector<std::string> out;
    size_t i = 1;
    while (i <= path.size()) {
        const size_t j = path.find('/', i);
        out.push_back(path.substr(i, j == std::string::npos ? std::string::npos : j - i));
        if (j == std::string::npos) break;
        i = j + 1;
    }
    if (path == "/") out.clear();
    return out;
}

// "[::1]:4420", "10.0.0.1:4420" -> address, port (false if not of that form).
bool split_endpoint(const std::string& s, std::string& address, uint16_t& port) {
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size() || s.size() - colon > 6) return false;
    const std::string p = s.substr(colon + 1);
    if (!std::all_of(p.begin(), p.end(), [](unsigned char c) { return std::isdigit(c); })) return false;
    const unsigned long n = std::stoul(p);
    if (n == 0 || n > 65535) return false;
    port = static_cast<uint16_t>(n);
    address = s.substr(0, colon);
    if (address.size() >= 2 && address.front() == '[' && address.back() == ']')
        address = address.substr(1, address.size() - 2);
    return !address.empty();
}

target::subsystem_config* find_subsystem(target::target_config& cfg, const std::string& nqn) {
    for (auto& s : cfg.subsystems)
        if (s.nqn == nqn) return &s;
    return nullptr;
}

target::subsystem_config& subsystem_or_404(target::target_config& cfg, const std::string& nqn) {
    if (auto* s = find_subsystem(cfg, nqn)) return *s;
    throw http_error(404, "no subsystem " + nqn);
}

target::namespace_config& namespace_or_404(target::subsystem_config& s, uint32_t nsid) {
    for (auto& n : s.namespaces)
        if (n.nsid == nsid) return n;
    throw http_error(404, "subsystem " + s.nqn + " has no namespace " + std::to_string(nsid));
}

uint32_t nsid_param(const std::string& text) {
    if (text.empty() || text.size() > 10 ||
        !std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); }))
        throw http_error(404, "'" + text + "' is not a namespace ID");
    return static_cast<uint32_t>(std::stoull(text));
}

json controller_json(const target::controller_view& c) {
    json q = json::array();
    for (const auto& v : c.queues)
        q.push_back({{"qid", v.qid}, {"depth", v.depth}, {"reactor", v.reactor}, {"connection", v.connection}});
    return {{"cntlid", c.cntlid}, {"hostnqn", c.hostnqn}, {"hostid", uuid_text(c.hostid)},
            {"peer", c.peer},     {"kato_ms", c.kato_ms}, {"queues", q}};
}

std::string nqn_warning(const std::string& nqn) {
    return "subsystem NQN '" + nqn +
           "' is not in the spec's form (nqn.yyyy-mm.reverse.domain:name or nqn.2014-08.org.nvmexpress:uuid:UUID)";
}

// A config_error from a body: 400 or 422 with the JSON path into the body.
api_response config_error_response(const config_error& e) {
    std::string path = e.path;
    return error_response(e.error_kind == config_error::kind::malformed ? 400 : 422, e.reason,
                          path.empty() ? "" : path);
}

json body_json(const std::string& body) {
    if (body.empty()) throw config_error(config_error::kind::malformed, body_origin, "", "a JSON body is needed");
    return parse_json_text(body, body_origin);
}

// The budget check on a would-be state; errors name `body_prefix`-relative paths.
void check_ram(const target::target_config& candidate, const ram_budget& budget, const std::string& state_prefix) {
    try {
        check_ram_budget(candidate, budget, "state");
    } catch (const config_error& e) {
        std::string path = e.path;
        if (path.starts_with(state_prefix)) path = path.substr(state_prefix.size());
        throw http_error(422, e.reason, path.empty() ? "/size" : path);
    }
}
}  // namespace

struct api_service::context {
    const api_request& req;
    std::vector<std::string> params;  // the pattern's {placeholders}, percent-decoded, in order
};

struct api_service::route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    std::vector<unsigned> statuses;
    bool public_when_configured = false;  // /metrics, /healthz
    bool always_public = false;           // GET / (the page asks for the token itself)
    std::function<api_response(context&)> handler;

    bool match(const std::vector<std::string>& path, std::vector<std::string>& params) const {
        if (path.size() != segments.size()) return false;
        params.clear();
        for (size_t i = 0; i < path.size(); ++i) {
            if (segments[i].starts_with("{")) {
                bool ok = false;
                params.push_back(percent_decode(path[i], ok));
                if (!ok || params.back().empty()) return false;
            } else if (segments[i] != path[i]) {
                return false;
            }
        }
        return true;
    }
};

std::string load_or_create_token(const std::string& path, bool& created) {
    created = false;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        std::string token;
        try {
            token = random_hex(32);
        } catch (const std::exception& e) {
            ::close(fd);
            ::unlink(path.c_str());
            throw std::runtime_error("token file " + path + ": " + e.what());
        }
        const std::string text = token + "\n";
        const bool ok = ::write(fd, text.data(), text.size()) == ssize_t(text.size()) && ::fsync(fd) == 0;
        const int err = errno;
        ::close(fd);
        if (!ok) {
            ::unlink(path.c_str());
            throw std::runtime_error("token file " + path + ": cannot write: " + std::strerror(err));
        }
        created = true;
        return token;
    }
    if (errno != EEXIST) throw std::runtime_error("token file " + path + ": cannot create: " + std::strerror(errno));
    std::ifstream f(path);
    if (!f) throw std::runtime_error("token file " + path + ": cannot open: " + std::strerror(errno));
    std::stringstream ss;
    ss << f.rdbuf();
    std::string token = ss.str();
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    if (token.empty()) throw std::runtime_error("token file " + path + " is empty");
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077))
        spdlog::warn("api: token file {} is readable by group or others (mode {:o}); chmod 600 it", path,
                     st.st_mode & 0777);
    return token;
}

void write_file_atomically(const std::string& path, const std::string& content, const char* what_file) {
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    const std::string tmp = dir + "/." + base + ".tmp";
    auto fail = [&](const std::string& what) {
        const int err = errno;
        throw std::runtime_error(std::string(what_file) + " " + path + ": " + what + ": " + std::strerror(err));
    };
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fail("cannot create " + tmp);
    size_t done = 0;
    while (done < content.size()) {
        const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            errno = err;
            fail("cannot write " + tmp);
        }
        done += size_t(n);
    }
    if (::fsync(fd) != 0) {
        const int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        errno = err;
        fail("fsync " + tmp);
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        errno = err;
        fail("cannot rename " + tmp);
    }
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) fail("cannot open directory " + dir);
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    errno = err;
    if (rc != 0) fail("fsync directory " + dir);
}

api_service::api_service(api_options opt, control_plane& control, std::string token)
    : _opt(std::move(opt)), _control(control), _token(std::move(token)), _keys(_opt.state_file) {
    _keys.adopt(_control.current_config(), _opt.key_files);
    add_routes();
    for (const auto& r : _routes) _route_infos.push_back({r.method, r.pattern, r.statuses});
}

api_service::~api_service() = default;

const std::vector<route_info>& api_service::routes() const {
    return _route_infos;
}

// Key files first (new ones only), then the state file that references them, then the files
// it no longer references go. A crash in between leaves unreferenced key files, deleted by the
// next change.
void api_service::persist(const target::target_config& cfg) {
    const key_file_map files = _keys.prepare(cfg);
    try {
        write_file_atomically(_opt.state_file, write_config(cfg, _opt.management, files));
    } catch (...) {
        _keys.abandoned(files);
        throw;
    }
    _keys.committed(files);
}

api_response api_service::handle(const api_request& req) {
    api_response res;
    try {
        res = dispatch(req);
    } catch (const http_error& e) {
        res = error_response(e.status, e.what(), e.path, e.extra);
    } catch (const config_error& e) {
        res = config_error_response(e);
    } catch (const change_error& e) {
        res = error_response(status_of(e.code), e.what());
    } catch (const std::exception& e) {
        res = error_response(500, e.what());
    }
    if (req.method != "GET" && req.method != "HEAD")
        spdlog::info("api: {} {} from {}: {}", req.method, req.target, req.peer, res.status);
    else
        spdlog::debug("api: {} {} from {}: {}", req.method, req.target, req.peer, res.status);
    return res;
}

api_response api_service::dispatch(const api_request& req) {
    const std::string path = req.target.substr(0, req.target.find('?'));
    const std::vector<std::string> segments = split_path(path);
    std::vector<std::string> params;
    const route* found = nullptr;
    std::vector<std::string> allowed;
    bool path_known = false;
    for (const auto& r : _routes) {
        if (!r.match(segments, params)) continue;
        path_known = true;
        allowed.push_back(r.method);
        if (r.method == req.method && !found) found = &r;
    }
    // Only the status page, and /metrics and /healthz when so configured, answer without the
    // token; everything else (unknown routes too) is authenticated before it is looked at.
    const bool is_public =
        found && (found->always_public || (found->public_when_configured && _opt.management.metrics_without_token));
    if (!is_public) {
        static const std::string prefix = "Bearer ";
        const std::string& auth = req.authorization;
        const bool ok = auth.size() == prefix.size() + _token.size() && auth.starts_with(prefix) &&
                        CRYPTO_memcmp(auth.data() + prefix.size(), _token.data(), _token.size()) == 0;
        if (!ok) {
            api_response r = error_response(
                401, auth.empty() ? "the Authorization: Bearer TOKEN header is missing" : "wrong bearer token");
            r.headers.push_back({"WWW-Authenticate", "Bearer"});
            return r;
        }
    }
    if (!found) {
        if (!path_known) return error_response(404, "no such route: " + path);
        std::string allow;
        for (const auto& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
        api_response r = error_response(405, req.method + " is not allowed on " + path + " (allowed: " + allow + ")");
        r.headers.push_back({"Allow", allow});
        return r;
    }
    found->match(segments, params);
    context ctx{req, std::move(params)};
    return found->handler(ctx);
}

void api_service::add_routes() {
    const std::vector<unsigned> get_list{200, 401, 500}, get_one{200, 401, 404, 500},
        create{201, 400, 401, 404, 409, 413, 422, 500}, create_top{201, 400, 401, 409, 413, 422, 500},
        patch{200, 400, 401, 404, 409, 413, 422, 500}, remove{204, 401, 404, 500};
    auto add = [this](std::string method, std::string pattern, std::vector<unsigned> statuses,
                      std::function<api_response(context&)> h) -> route& {
        route r;
        r.method = std::move(method);
        r.pattern = std::move(pattern);
        r.segments = split_path(r.pattern);
        r.statuses = std::move(statuses);
        r.handler = std::move(h);
        _routes.push_back(std::move(r));
        return _routes.back();
    };

    // Additions are applied, then persisted; if the state file cannot be written the inverse
    // call undoes them. Removals, patches and resizes persist the state they will leave first
    // and then apply it (their inverse would lose data: a removed RAM namespace's blocks), and
    // write the previous state back if the target refuses.
    auto commit_addition = [this](const std::function<void()>& undo) {
        try {
            persist(_control.current_config());
        } catch (const std::exception& e) {
            try {
                undo();
            } catch (const std::exception& u) {
                spdlog::error("api: undoing a change that could not be persisted failed too: {}", u.what());
            }
            throw http_error(500, std::string(e.what()) + "; the change was undone");
        }
    };
    auto persist_then_apply = [this](const target::target_config& before, const target::target_config& after,
                                     const std::function<void()>& apply) {
        try {
            persist(after);
        } catch (const std::exception& e) {
            throw http_error(500, std::string(e.what()) + "; nothing was changed");
        }
        try {
            apply();
        } catch (...) {
            try {
                persist(before);
            } catch (const std::exception& e) {
                spdlog::error("api: a refused change left the state file ahead of the target: {}", e.what());
            }
            throw;
        }
        try {
            persist(_control.current_config());  // as the target states it
        } catch (const std::exception& e) {
            spdlog::warn("api: {} (the state file holds the change as predicted)", e.what());
        }
    };
    auto subsystem_view = [&c = _control](const target::subsystem_config& s) {
        json j = to_json(s);
        j["controllers"] = json::array();
        try {
            for (const auto& v : c.controllers(s.nqn)) j["controllers"].push_back(controller_json(v));
        } catch (const change_error& e) {
            if (e.code != change_errc::not_found) throw;
        }
        if (!nqn_in_spec_form(s.nqn)) j["warnings"] = json::array({nqn_warning(s.nqn)});
        return j;
    };

    // ---- subsystems
    add("GET", "/api/v1/subsystems", get_list, [&c = _control, subsystem_view](context&) {
        json out = json::array();
        for (const auto& s : c.current_config().subsystems) out.push_back(subsystem_view(s));
        return json_response(200, out);
    });
    add("POST", "/api/v1/subsystems", create_top, [this, &c = _control, subsystem_view, commit_addition](context& ctx) {
        warning_list warnings;
        const target::subsystem_config sc = parse_subsystem(body_json(ctx.req.body), "", body_origin, warnings);
        std::lock_guard lock(_change_lock);
        target::target_config cfg = c.current_config();
        if (find_subsystem(cfg, sc.nqn)) throw http_error(409, "subsystem " + sc.nqn + " exists", "/nqn");
        cfg.subsystems.push_back(sc);
        check_ram(cfg, _opt.ram, "/subsystems/" + std::to_string(cfg.subsystems.size() - 1));
        c.add_subsystem(sc);
        commit_addition([&] { c.remove_subsystem(sc.nqn); });
        for (const auto& w : warnings) spdlog::warn("api: POST /api/v1/subsystems: {}", w);
        target::target_config now = c.current_config();
        json view = subsystem_view(subsystem_or_404(now, sc.nqn));
        for (const auto& w : warnings)  // the view states the NQN's warning itself
            if (!w.starts_with("/nqn:")) {
                if (!view.contains("warnings")) view["warnings"] = json::array();
                view["warnings"].push_back(w);
            }
        return json_response(201, view);
    });
    add("GET", "/api/v1/subsystems/{nqn}", get_one, [&c = _control, subsystem_view](context& ctx) {
        target::target_config cfg = c.current_config();
        return json_response(200, subsystem_view(subsystem_or_404(cfg, ctx.params[0])));
    });
    add("PATCH", "/api/v1/subsystems/{nqn}", patch,
        [this, &c = _control, subsystem_view, persist_then_apply](context& ctx) {
            const json j = body_json(ctx.req.body);
            if (!j.is_object())
                throw config_error(config_error::kind::malformed, body_origin, "/", "must be an object");
            target::subsystem_patch p;
            for (auto it = j.begin(); it != j.end(); ++it) {
                const std::string key = it.key(), where = "/" + key;
                if (key == "allow_any_host") {
                    if (!it->is_boolean()) throw http_error(400, "must be true or false", where);
                    p.allow_any_host = it->get<bool>();
                } else if (key == "model" || key == "serial") {
                    if (!it->is_string()) throw http_error(400, "must be a string", where);
                    const std::string v = it->get<std::string>();
                    if (v.size() > (key == "model" ? 40u : 20u))
                        throw http_error(422, key == "model" ? "at most 40 characters" : "at most 20 characters",
                                         where);
                    (key == "model" ? p.model : p.serial) = v;
                } else {
                    throw http_error(400, "unknown key (expected one of: allow_any_host, model, serial)", where);
                }
            }
            std::lock_guard lock(_change_lock);
            const target::target_config before = c.current_config();
            target::target_config after = before;
            target::subsystem_config& s = subsystem_or_404(after, ctx.params[0]);
            if (p.allow_any_host) s.allow_any_host = *p.allow_any_host;
            if (p.model) s.model = *p.model;
            if (p.serial) s.serial = *p.serial;
            persist_then_apply(before, after, [&] { c.update_subsystem(ctx.params[0], p); });
            target::target_config now = c.current_config();
            return json_response(200, subsystem_view(subsystem_or_404(now, ctx.params[0])));
        });
    add("DELETE", "/api/v1/subsystems/{nqn}", remove, [this, &c = _control, persist_then_apply](context& ctx) {
        std::lock_guard lock(_change_lock);
        const target::target_config before = c.current_config();
        target::target_config after = before;
        subsystem_or_404(after, ctx.params[0]);
        std::erase_if(after.subsystems, [&](const auto& s) { return s.nqn == ctx.params[0]; });
        persist_then_apply(before, after, [&] { c.remove_subsystem(ctx.params[0]); });
        return no_content();
    });

    // ---- namespaces
    add("POST", "/api/v1/subsystems/{nqn}/namespaces", create, [this, &c = _control, commit_addition](context& ctx) {
        target::namespace_config nc = parse_namespace(body_json(ctx.req.body), "", body_origin, 0);
        std::lock_guard lock(_change_lock);
        target::target_config cfg = c.current_config();
        target::subsystem_config& s = subsystem_or_404(cfg, ctx.params[0]);
        for (const auto& have : s.namespaces)
            if (nc.nsid && have.nsid == nc.nsid)
                throw http_error(409, "subsystem " + s.nqn + " has a namespace " + std::to_string(nc.nsid), "/nsid");
        s.namespaces.push_back(nc);
        const size_t si = size_t(&s - cfg.subsystems.data());
        check_ram(cfg, _opt.ram,
                  "/subsystems/" + std::to_string(si) + "/namespaces/" + std::to_string(s.namespaces.size() - 1));
        const uint32_t nsid = c.add_namespace(ctx.params[0], nc);
        commit_addition([&] { c.remove_namespace(ctx.params[0], nsid); });
        target::target_config now = c.current_config();
        return json_response(201, to_json(namespace_or_404(subsystem_or_404(now, ctx.params[0]), nsid)));
    });
    add("GET", "/api/v1/subsystems/{nqn}/namespaces/{nsid}", get_one, [&c = _control](context& ctx) {
        target::target_config cfg = c.current_config();
        return json_response(
            200, to_json(namespace_or_404(subsystem_or_404(cfg, ctx.params[0]), nsid_param(ctx.params[1]))));
    });
    add("PATCH", "/api/v1/subsystems/{nqn}/namespaces/{nsid}", patch,
        [this, &c = _control, persist_then_apply](context& ctx) {
            const json j = body_json(ctx.req.body);
            if (!j.is_object())
                throw config_error(config_error::kind::malformed, body_origin, "/", "must be an object");
            for (auto it = j.begin(); it != j.end(); ++it)
                if (it.key() != "size" && it.key() != "ana_group")
                    throw http_error(400, "unknown key (expected: size, ana_group)", "/" + it.key());
            if (!j.contains("size") && !j.contains("ana_group"))
                throw http_error(400, "missing: size or ana_group", "/size");
            std::optional<uint32_t> ana_group;
            if (j.contains("ana_group")) {
                if (!j["ana_group"].is_number_integer()) throw http_error(400, "must be an integer", "/ana_group");
                const json& g = j["ana_group"];
                if (!g.is_number_unsigned() || g.get<uint64_t>() < 1 || g.get<uint64_t>() > target::max_ana_groups)
                    throw http_error(422, "must be an ANA group 1.." + std::to_string(target::max_ana_groups),
                                     "/ana_group");
                ana_group = static_cast<uint32_t>(g.get<uint64_t>());
            }
            uint64_t size = 0;
            if (!j.contains("size")) {
                // Only the group moves.
            } else if (j["size"].is_number_unsigned()) {
                size = j["size"].get<uint64_t>();
            } else if (j["size"].is_string()) {
                try {
                    size = parse_size(j["size"].get<std::string>());
                } catch (const std::invalid_argument& e) {
                    throw http_error(422, e.what(), "/size");
                }
            } else {
                throw http_error(400, "must be a size string (\"2GiB\") or a number of bytes", "/size");
            }
            std::lock_guard lock(_change_lock);
            const target::target_config before = c.current_config();
            target::target_config after = before;
            target::subsystem_config& s = subsystem_or_404(after, ctx.params[0]);
            target::namespace_config& n = namespace_or_404(s, nsid_param(ctx.params[1]));
            if (j.contains("size")) {
                if (n.backend != target::backend_kind::ram && n.backend != target::backend_kind::file)
                    throw http_error(422, "only ram and file namespaces can grow", "/size");
                if (size == 0 || size % n.block_size)
                    throw http_error(422,
                                     "must be a non-zero multiple of block_size (" + std::to_string(n.block_size) + ")",
                                     "/size");
                if (size < n.size_bytes)
                    throw http_error(
                        422, "shrinking is refused (the namespace has " + std::to_string(n.size_bytes) + " bytes)",
                        "/size");
                n.size_bytes = size;
            }
            if (ana_group) n.ana_group = *ana_group;
            const size_t si = size_t(&s - after.subsystems.data()), ni = size_t(&n - s.namespaces.data());
            check_ram(after, _opt.ram, "/subsystems/" + std::to_string(si) + "/namespaces/" + std::to_string(ni));
            const uint32_t nsid = n.nsid;
            persist_then_apply(before, after, [&] {
                if (j.contains("size")) c.resize_namespace(ctx.params[0], nsid, size);
                // After a resize (which refuses as a whole): a group move cannot fail once the namespace exists.
                if (ana_group) c.set_namespace_ana_group(ctx.params[0], nsid, *ana_group);
            });
            target::target_config now = c.current_config();
            return json_response(200, to_json(namespace_or_404(subsystem_or_404(now, ctx.params[0]), nsid)));
        });
    add("DELETE", "/api/v1/subsystems/{nqn}/namespaces/{nsid}", remove,
        [this, &c = _control, persist_then_apply](context& ctx) {
            std::lock_guard lock(_change_lock);
            const target::target_config before = c.current_config();
            target::target_config after = before;
            target::subsystem_config& s = subsystem_or_404(after, ctx.params[0]);
            const uint32_t nsid = namespace_or_404(s, nsid_param(ctx.params[1])).nsid;
            std::erase_if(s.namespaces, [&](const auto& n) { return n.nsid == nsid; });
            persist_then_apply(before, after, [&] { c.remove_namespace(ctx.params[0], nsid); });
            return no_content();
        });

    // ---- hosts
    auto keys_of = [](const target::subsystem_config& s, const std::string& host) {
        auto k = s.keys.find(host);
        return k == s.keys.end() ? target::host_keys{} : k->second;
    };
    auto listed_or_404 = [](const target::subsystem_config& s, const std::string& host) {
        if (std::find(s.hosts.begin(), s.hosts.end(), host) == s.hosts.end())
            throw http_error(404, "host " + host + " is not on the list of subsystem " + s.nqn);
    };
    add("GET", "/api/v1/subsystems/{nqn}/hosts", get_one, [&c = _control, keys_of](context& ctx) {
        target::target_config cfg = c.current_config();
        const target::subsystem_config& s = subsystem_or_404(cfg, ctx.params[0]);
        json out = json::array();
        for (const auto& h : s.hosts) out.push_back(host_view(h, keys_of(s, h)));
        return json_response(200, out);
    });
    add("POST", "/api/v1/subsystems/{nqn}/hosts", create,
        [this, &c = _control, commit_addition, keys_of](context& ctx) {
            host_entry host = parse_host(body_json(ctx.req.body), "", body_origin);
            std::lock_guard lock(_change_lock);
            target::target_config cfg = c.current_config();
            target::subsystem_config& s = subsystem_or_404(cfg, ctx.params[0]);
            if (std::find(s.hosts.begin(), s.hosts.end(), host.nqn) != s.hosts.end())
                throw http_error(409, "host " + host.nqn + " is allowed already", "/nqn");
            c.add_host(ctx.params[0], host.nqn, host.keys);
            commit_addition([&] { c.remove_host(ctx.params[0], host.nqn); });
            target::target_config now = c.current_config();
            json view = host_view(host.nqn, keys_of(subsystem_or_404(now, ctx.params[0]), host.nqn));
            for (const char* f : host_key_fields) wipe(key_field(host.keys, f));
            if (s.allow_any_host && !host.keys.empty())
                view["warnings"] =
                    json::array({"\"allow_any_host\" is true: hosts not on the list connect without "
                                 "keys"});
            return json_response(201, view);
        });
    add("GET", "/api/v1/subsystems/{nqn}/hosts/{hostnqn}", get_one,
        [&c = _control, keys_of, listed_or_404](context& ctx) {
            target::target_config cfg = c.current_config();
            const target::subsystem_config& s = subsystem_or_404(cfg, ctx.params[0]);
            listed_or_404(s, ctx.params[1]);
            return json_response(200, host_view(ctx.params[1], keys_of(s, ctx.params[1])));
        });
    // Rotation: the keys given replace the host's, null or "" clears one, the others stay.
    add("PATCH", "/api/v1/subsystems/{nqn}/hosts/{hostnqn}", patch,
        [this, &c = _control, persist_then_apply, keys_of, listed_or_404](context& ctx) {
            const json j = body_json(ctx.req.body);
            std::lock_guard lock(_change_lock);
            const target::target_config before = c.current_config();
            target::target_config after = before;
            target::subsystem_config& s = subsystem_or_404(after, ctx.params[0]);
            listed_or_404(s, ctx.params[1]);
            target::host_keys keys = keys_of(s, ctx.params[1]);
            patch_host_keys(j, body_origin, keys);
            if (keys.empty())
                s.keys.erase(ctx.params[1]);
            else
                s.keys[ctx.params[1]] = keys;
            persist_then_apply(before, after, [&] { c.set_host_keys(ctx.params[0], ctx.params[1], keys); });
            for (const char* f : host_key_fields) wipe(key_field(keys, f));
            target::target_config now = c.current_config();
            return json_response(
                200, host_view(ctx.params[1], keys_of(subsystem_or_404(now, ctx.params[0]), ctx.params[1])));
        });
    add("DELETE", "/api/v1/subsystems/{nqn}/hosts/{hostnqn}", remove,
        [this, &c = _control, persist_then_apply](context& ctx) {
            std::lock_guard lock(_change_lock);
            const target::target_config before = c.current_config();
            target::target_config after = before;
            target::subsystem_config& s = subsystem_or_404(after, ctx.params[0]);
            if (std::erase(s.hosts, ctx.params[1]) == 0)
                throw http_error(404, "host " + ctx.params[1] + " is not on the list of subsystem " + s.nqn);
            s.keys.erase(ctx.params[1]);
            persist_then_apply(before, after, [&] { c.remove_host(ctx.params[0], ctx.params[1]); });
            return no_content();
        });

    // ---- controllers
    add("GET", "/api/v1/subsystems/{nqn}/controllers", get_one, [&c = _control](context& ctx) {
        json out = json::array();
        for (const auto& v : c.controllers(ctx.params[0])) out.push_back(controller_json(v));
        return json_response(200, out);
    });
    add("DELETE", "/api/v1/subsystems/{nqn}/controllers/{cntlid}", remove, [this, &c = _control](context& ctx) {
        const std::string& t = ctx.params[1];
        if (t.size() > 5 || !std::all_of(t.begin(), t.end(), [](unsigned char x) { return std::isdigit(x); }) ||
            std::stoul(t) > 0xFFFF)
            throw http_error(404, "'" + t + "' is not a controller ID");
        std::lock_guard lock(_change_lock);
        c.drop_controller(ctx.params[0], static_cast<uint16_t>(std::stoul(t)));
        return no_content();
    });

    // ---- listeners and referrals
    // A listener as GET shows it: its configuration and, under a gateway group, the live states
    // of the groups the gateway runs (not configuration: set by the group; PUT of one is 409).
    add("GET", "/api/v1/listeners", get_list, [&c = _control](context&) {
        const auto managed = c.managed_ana();  // one view for every listener of the answer
        json ana_managed;
        if (!managed.manager.empty()) {
            json groups = json::object();
            for (const auto& [group, state] : managed.groups)
                groups[std::to_string(group)] = target::ana_state_name(state);
            ana_managed = {{"by", managed.manager}, {"groups", groups}};
        }
        json out = json::array();
        for (const auto& l : c.current_config().listeners) {
            out.push_back(to_json(l));
            if (!ana_managed.is_null()) out.back()["ana_managed"] = ana_managed;
        }
        return json_response(200, out);
    });
    add("POST", "/api/v1/listeners", create_top, [this, &c = _control, commit_addition](context& ctx) {
        const target::listener_config l = parse_listener(body_json(ctx.req.body), "", body_origin);
        std::lock_guard lock(_change_lock);
        for (const auto& have : c.current_config().listeners)
            if (have.address == l.address && have.port == l.port)
                throw http_error(409, "listener " + l.address + ":" + std::to_string(l.port) + " exists");
        c.add_listener(l);
        commit_addition([&] { c.remove_listener(l.address, l.port); });
        return json_response(201, to_json(l));
    });
    add("DELETE", "/api/v1/listeners/{address}:{port}", remove,
        [this, &c = _control, persist_then_apply](context& ctx) {
            std::string address;
            uint16_t port = 0;
            if (!split_endpoint(ctx.params[0], address, port)) throw http_error(404, "no listener " + ctx.params[0]);
            std::lock_guard lock(_change_lock);
            const target::target_config before = c.current_config();
            target::target_config after = before;
            if (std::erase_if(after.listeners, [&](const auto& l) { return l.address == address && l.port == port; }) ==
                0)
                throw http_error(404, "no listener " + ctx.params[0]);
            persist_then_apply(before, after, [&] { c.remove_listener(address, port); });
            return no_content();
        });
    // ANA state of one group through one listener: {"state": "inaccessible"}; optimized is the default.
    add("PUT", "/api/v1/listeners/{address}:{port}/ana/{group}", patch,
        [this, &c = _control, persist_then_apply](context& ctx) {
            std::string address;
            uint16_t port = 0;
            if (!split_endpoint(ctx.params[0], address, port)) throw http_error(404, "no listener " + ctx.params[0]);
            const uint32_t group = parse_ana_group(ctx.params[1]);
            const json j = body_json(ctx.req.body);
            if (!j.is_object())
                throw config_error(config_error::kind::malformed, body_origin, "/", "must be an object");
            for (auto it = j.begin(); it != j.end(); ++it)
                if (it.key() != "state") throw http_error(400, "unknown key (expected: state)", "/" + it.key());
            if (!j.contains("state")) throw http_error(400, "missing", "/state");
            if (!j["state"].is_string()) throw http_error(400, "must be a string", "/state");
            const auto state = target::parse_ana_state(j["state"].get<std::string>());
            if (!state) throw http_error(422, ana_state_error(j["state"].get<std::string>()), "/state");
            if (!target::ana_state_settable(*state))
                throw http_error(400, std::string(target::ana_change_refusal), "/state");
            std::lock_guard lock(_change_lock);
            const target::target_config before = c.current_config();
            target::target_config after = before;
            auto l = std::find_if(after.listeners.begin(), after.listeners.end(),
                                  [&](const auto& x) { return x.address == address && x.port == port; });
            if (l == after.listeners.end()) throw http_error(404, "no listener " + ctx.params[0]);
            if (!group)
                throw http_error(
                    422,
                    "'" + ctx.params[1] + "' is not an ANA group (1.." + std::to_string(target::max_ana_groups) + ")",
                    "/group");
            if (*state == target::ana_state::optimized)
                l->ana.erase(group);
            else
                l->ana[group] = *state;
            persist_then_apply(before, after, [&] { c.set_ana_state(address, port, group, *state); });
            for (const auto& now : c.current_config().listeners)
                if (now.address == address && now.port == port) return json_response(200, to_json(now));
            throw http_error(404, "no listener " + ctx.params[0]);
        });
    add("GET", "/api/v1/referrals", get_list, [&c = _control](context&) {
        json out = json::array();
        for (const auto& r : c.current_config().referrals) out.push_back(to_json(r));
        return json_response(200, out);
    });
    add("POST", "/api/v1/referrals", create_top, [this, &c = _control, commit_addition](context& ctx) {
        const target::referral_config r = parse_referral(body_json(ctx.req.body), "", body_origin);
        std::lock_guard lock(_change_lock);
        for (const auto& have : c.current_config().referrals)
            if (have.address == r.address && have.port == r.port)
                throw http_error(409, "referral " + r.address + ":" + std::to_string(r.port) + " exists");
        c.add_referral(r);
        commit_addition([&] { c.remove_referral(r.address, r.port); });
        return json_response(201, to_json(r));
    });
    add("DELETE", "/api/v1/referrals/{address}:{port}", remove,
        [this, &c = _control, persist_then_apply](context& ctx) {
            std::string address;
            uint16_t port = 0;
            if (!split_endpoint(ctx.params[0], address, port)) throw http_error(404, "no referral " + ctx.params[0]);
            std::lock_guard lock(_change_lock);
            const target::target_config before = c.current_config();
            target::target_config after = before;
            if (std::erase_if(after.referrals, [&](const auto& r) { return r.address == address && r.port == port; }) ==
                0)
                throw http_error(404, "no referral " + ctx.params[0]);
            persist_then_apply(before, after, [&] { c.remove_referral(address, port); });
            return no_content();
        });

    // ---- devices (env/pci: the binding rules deploy/setup.sh and ferryctl apply)
    // Why ferry needs the device: one reason per namespace served from it.
    auto ferry_users = [](const target::target_config& cfg, const std::string& bdf) {
        json reasons = json::array();
        for (const auto& s : cfg.subsystems)
            for (const auto& n : s.namespaces)
                if (n.backend == target::backend_kind::pcie && n.pcie_address == bdf)
                    reasons.push_back("namespace " + std::to_string(n.nsid) + " of subsystem " + s.nqn +
                                      " is served from it");
        return reasons;
    };
    auto device_json = [ferry_users](const target::target_config& cfg, const env::pci_device& d) {
        char ids[8];
        json j = {{"address", d.bdf},
                  {"driver", d.driver},
                  {"iommu_group", d.iommu_group},
                  {"numa_node", d.numa_node},
                  {"block_devices", d.block_devices},
                  {"in_use_by_ferry", !ferry_users(cfg, d.bdf).empty()}};
        std::snprintf(ids, sizeof ids, "%04x", d.vendor);
        j["vendor"] = ids;
        std::snprintf(ids, sizeof ids, "%04x", d.device);
        j["device"] = ids;
        return j;
    };
    add("GET", "/api/v1/devices", get_list, [this, device_json, &c = _control](context&) {
        const target::target_config cfg = c.current_config();
        json out = json::array();
        for (const auto& d : env::list_nvme_devices(_opt.sysfs)) out.push_back(device_json(cfg, d));
        return json_response(200, out);
    });
    auto device_or_404 = [this](const std::string& bdf) {
        try {
            return env::read_pci_device(bdf, _opt.sysfs);  // not a BDF, or no such device
        } catch (const std::exception& e) {
            throw http_error(404, e.what());
        }
    };
    add("POST", "/api/v1/devices/{bdf}/attach", {200, 401, 404, 409, 422, 500},
        [this, device_json, device_or_404, &c = _control](context& ctx) {
            std::lock_guard lock(_change_lock);
            const env::pci_device d = device_or_404(ctx.params[0]);
            if (d.class_code != env::nvme_class_code) throw http_error(422, d.bdf + " is not an NVMe controller");
            const std::vector<std::string> reasons =
                env::device_in_use_reasons(d, _opt.sysfs, _opt.mounts_file, _opt.swaps_file);
            if (!reasons.empty())
                throw http_error(409, d.bdf + " is in use; it stays with its driver", {}, {{"reasons", reasons}});
            const std::vector<std::string> conflicts = env::iommu_group_conflicts(d.bdf, {}, _opt.sysfs);
            if (!conflicts.empty())
                throw http_error(409,
                                 d.bdf +
                                     " shares its IOMMU group with devices on another driver; vfio cannot use "
                                     "the group",
                                 {}, {{"reasons", conflicts}});
            env::bind_to_vfio(d.bdf, /*force: checked above*/ true, _opt.sysfs, _opt.mounts_file, _opt.swaps_file);
            return json_response(200, device_json(c.current_config(), env::read_pci_device(d.bdf, _opt.sysfs)));
        });
    add("POST", "/api/v1/devices/{bdf}/detach", {200, 401, 404, 409, 500},
        [this, device_json, device_or_404, ferry_users, &c = _control](context& ctx) {
            std::lock_guard lock(_change_lock);
            const env::pci_device d = device_or_404(ctx.params[0]);
            const target::target_config cfg = c.current_config();
            if (json reasons = ferry_users(cfg, d.bdf); !reasons.empty())
                throw http_error(409, d.bdf + " is in use by ferry; remove those namespaces first", {},
                                 {{"reasons", reasons}});
            env::unbind_from_vfio(d.bdf, _opt.sysfs);
            return json_response(200, device_json(cfg, env::read_pci_device(d.bdf, _opt.sysfs)));
        });

    // ---- state, counters, documents
    add("GET", "/api/v1/config", get_list, [this, &c = _control](context&) {
        return json_response(200, config_json(c.current_config(), _opt.management));
    });
    add("GET", "/api/v1/stats", get_list, [&c = _control](context&) { return json_response(200, c.stats()); });
    add("GET", "/api/v1/openapi.json", {200, 401}, [](context&) {
        api_response r;
        r.body = openapi_document();
        return r;
    });
    add("GET", "/metrics", {200, 401, 500}, [&c = _control](context&) {
        api_response r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = c.metrics();
        return r;
    }).public_when_configured = true;
    add("GET", "/healthz", {200, 401}, [](context&) {
        return json_response(200, {{"status", "ok"}});
    }).public_when_configured = true;
    add("GET", "/", {200}, [](context&) {
        api_response r;
        r.content_type = "text/html; charset=utf-8";
        r.body = std::string(status_page_html());
        return r;
    }).always_public = true;
}

}  // namespace ferry::mgmt
