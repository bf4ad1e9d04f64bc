// ferryctl: command line client of ferryd's management API (see README.md).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <ctime>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "tools/ferryctl/bodies.hh"
#include "tools/ferryctl/http_client.hh"
#include "tools/ferryctl/local_devices.hh"
#include "tools/ferryctl/render.hh"
#include "tools/ferryctl/url.hh"

namespace {

using json = nlohmann::json;
using namespace ferry::ferryctl;

constexpr const char* default_url = "http://127.0.0.1:8420";
constexpr const char* default_token_file = "/var/lib/ferry/api-token";
constexpr const char* api = "/api/v1";

const char* help_footer = R"(Where the API is (first match wins):
  --url URL          or env FERRY_URL,        else http://127.0.0.1:8420
  --token-file PATH  or env FERRY_TOKEN_FILE, else /var/lib/ferry/api-token
  The token file is ferryd's management "token_file" (ferryd creates it at first start and logs
  its path). For https:// URLs, --ca-file trusts a CA (e.g. a self-signed certificate) instead
  of the system's.

Output: tables for people; --json prints the API's JSON (one document; stats --watch: one line
per sample) for scripts. Warnings of the API go to stderr.

Exit status:
  0  done
  1  the API refused the request (its HTTP status, message and JSON path are printed)
  2  usage error (bad command line, option or URL)
  3  cannot reach the API (resolve, connect, TLS, timeout, not an HTTP answer)
  4  authentication: the token file cannot be read, or the API refused the token (401/403)

Examples:
  ferryctl subsystem add nqn.2026-11.io.ferry:db --host nqn.2014-08.org.nvmexpress:uuid:...
  ferryctl ns add nqn.2026-11.io.ferry:db --backend ram --size 1GiB
  ferryctl ns add nqn.2026-11.io.ferry:db --backend pcie --pcie-address 0000:00:04.0 --pcie-nsid 1
  ferryctl ns add nqn.2026-11.io.ferry:db --backend rbd --pool rbd --image vol1 --ceph-conf /etc/ceph/ceph.conf
  ferryctl listener add 10.0.0.1 4420 --tls required
  ferryctl host add nqn.2026-11.io.ferry:db nqn.2014-08.org.nvmexpress:uuid:... \
      --dhchap-key-file /root/host1.dhchap --tls-psk-file /root/host1.psk
  ferryctl host set-keys nqn.2026-11.io.ferry:db nqn.2014-08.org.nvmexpress:uuid:... \
      --dhchap-key-file /root/host1.new --clear-tls-psk
  ferryctl stats --watch 2)";

struct globals {
    std::string url = default_url;
    std::string token_file = default_token_file;
    std::string ca_file;
    unsigned timeout_s = 30;
    bool json_output = false;
};

class session {
public:
    explicit session(const globals& g) : _g(g) {}

    // The API's answer body (null for 204) or an exception naming what failed.
    json call(const std::string& method, const std::string& path, const std::optional<json>& body = std::nullopt) {
        const std::string full = std::string(api) + path;
        http_response res =
            client().request(method, full, body ? std::optional<std::string>(body->dump()) : std::nullopt);
        if (res.status < 200 || res.status > 299) throw_api_error(method, full, res);
        if (res.body.empty()) return nullptr;
        json parsed = json::parse(res.body, nullptr, false);
        if (parsed.is_discarded())
            throw connect_error(method + " " + full + ": HTTP " + std::to_string(res.status) +
                                " but the body is not JSON (is " + _g.url + " ferryd's API?)");
        for (const auto& w : response_warnings(parsed)) std::cerr << "ferryctl: warning: " << w << "\n";
        return parsed;
    }

    // --json: the API's JSON; else the human form (nothing when the answer was 204).
    void show(const json& body, const std::function<std::string(const json&)>& human) {
        if (_g.json_output) {
            if (!body.is_null()) std::cout << body.dump(2) << "\n";
        } else {
            std::cout << human(body);
        }
    }
    void done(const json& body, const std::string& message) {
        show(body, [&](const json&) { return message + "\n"; });
    }

    const globals& g() const { return _g; }

private:
    api_client& client() {
        if (!_client) {
            client_options opts;
            opts.url = parse_api_url(_g.url);
            opts.token = read_token_file(_g.token_file);
            opts.ca_file = _g.ca_file;
            opts.timeout = std::chrono::seconds(_g.timeout_s);
            _client.emplace(std::move(opts));
        }
        return *_client;
    }

    const globals& _g;
    std::optional<api_client> _client;
};

std::string subsystem_path(const std::string& nqn) {
    return "/subsystems/" + percent_encode(nqn);
}

// Options given as text on the command line, turned into optionals after parsing.
struct optional_text {
    std::string value;
    CLI::Option* option = nullptr;
    std::optional<std::string> get() const {
        return option && option->count() ? std::optional<std::string>(value) : std::nullopt;
    }
};
struct optional_u32 {
    uint32_t value = 0;
    CLI::Option* option = nullptr;
    std::optional<uint32_t> get() const {
        return option && option->count() ? std::optional<uint32_t>(value) : std::nullopt;
    }
};

// A --local device command refused or failed; it printed why already.
struct local_refused {};

volatile sig_atomic_t interrupted = 0;

void watch_stats(session& s, unsigned seconds) {
    signal(SIGINT, [](int) { interrupted = 1; });
    std::optional<json> previous;
    auto previous_time = std::chrono::steady_clock::now();
    while (!interrupted) {
        json stats = s.call("GET", "/stats");
        auto now = std::chrono::steady_clock::now();
        if (s.g().json_output) {
            std::cout << stats.dump() << std::endl;
        } else {
            std::time_t t = std::time(nullptr);
            char stamp[32];
            std::strftime(stamp, sizeof stamp, "%F %T", std::localtime(&t));
            if (isatty(STDOUT_FILENO)) std::cout << "\x1b[H\x1b[2J";
            std::cout << stamp << " (every " << seconds << " s; Ctrl-C stops)\n"
                      << stats_text(stats, previous, std::chrono::duration<double>(now - previous_time).count())
                      << std::endl;
        }
        previous = std::move(stats);
        previous_time = now;
        for (unsigned i = 0; i < seconds * 10 && !interrupted; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "ferryctl: manage a running ferryd through its REST API (subsystems, namespaces, hosts, listeners,\n"
        "referrals, controllers, local NVMe devices, statistics)."};
    app.require_subcommand(1);
    app.fallthrough();
    globals g;
    app.add_option("--url", g.url, "API base URL, http:// or https://")->envname("FERRY_URL")->capture_default_str();
    app.add_option("--token-file", g.token_file, "file holding the API token")
        ->envname("FERRY_TOKEN_FILE")
        ->capture_default_str();
    app.add_option("--ca-file", g.ca_file, "https: PEM file of the CA(s) to trust instead of the system's");
    app.add_option("--timeout", g.timeout_s, "seconds to wait for each read or write of the API connection")
        ->capture_default_str()
        ->check(CLI::Range(1, 3600));
    app.add_flag("--json", g.json_output, "print the API's JSON instead of tables");

    session s(g);
    std::function<void()> action;
    auto on = [&](CLI::App* cmd, std::function<void()> fn) { cmd->callback([&action, fn] { action = fn; }); };

    // ---- subsystem
    auto* sub = app.add_subcommand("subsystem", "subsystems: add, list, show, remove, set")->require_subcommand(1);
    subsystem_args sa;
    optional_text sa_serial, sa_model;
    auto* s_add = sub->add_subcommand("add", "create a subsystem (no namespaces; see ns add)");
    s_add->add_option("nqn", sa.nqn, "subsystem NQN")->required();
    sa_serial.option = s_add->add_option("--serial", sa_serial.value, "serial number (default: derived from the NQN)");
    sa_model.option = s_add->add_option("--model", sa_model.value, "model number (default: ferry)");
    s_add->add_flag("--allow-any-host", sa.allow_any_host, "let every host connect (default: only --host)");
    s_add->add_option("--host", sa.hosts, "host NQN allowed to connect (repeat for more)");
    on(s_add, [&] {
        sa.serial = sa_serial.get();
        sa.model = sa_model.get();
        json res = s.call("POST", "/subsystems", subsystem_body(sa));
        s.done(res, "subsystem " + sa.nqn + " created");
    });
    auto* s_list = sub->add_subcommand("list", "list subsystems");
    on(s_list, [&] { s.show(s.call("GET", "/subsystems"), subsystems_table); });
    std::string nqn, host, cntlid_text;
    auto* s_show = sub->add_subcommand("show", "a subsystem's settings, namespaces, hosts and live controllers");
    s_show->add_option("nqn", nqn, "subsystem NQN")->required();
    on(s_show, [&] { s.show(s.call("GET", subsystem_path(nqn)), subsystem_text); });
    auto* s_remove = sub->add_subcommand("remove", "delete a subsystem; its hosts' connections are closed at once");
    s_remove->add_option("nqn", nqn, "subsystem NQN")->required();
    on(s_remove, [&] { s.done(s.call("DELETE", subsystem_path(nqn)), "subsystem " + nqn + " removed"); });
    auto* s_set = sub->add_subcommand("set", "change a subsystem (model and serial only before any host connected)");
    s_set->add_option("nqn", nqn, "subsystem NQN")->required();
    optional_text set_any, set_model, set_serial;
    set_any.option = s_set->add_option("--allow-any-host", set_any.value, "true or false");
    set_model.option = s_set->add_option("--model", set_model.value, "model number");
    set_serial.option = s_set->add_option("--serial", set_serial.value, "serial number");
    on(s_set, [&] {
        subsystem_patch_args p;
        if (auto v = set_any.get()) p.allow_any_host = parse_bool(*v, "--allow-any-host");
        p.model = set_model.get();
        p.serial = set_serial.get();
        s.done(s.call("PATCH", subsystem_path(nqn), subsystem_patch_body(p)), "subsystem " + nqn + " changed");
    });

    // ---- ns
    auto* ns = app.add_subcommand("ns", "namespaces: add, list, show, resize, set-group, remove")->require_subcommand(1);
    namespace_args na;
    na.backend = "ram";
    optional_u32 na_nsid, na_block, na_pcie_nsid, na_ana_group;
    optional_text na_size, na_uuid, na_nguid, na_eui64, na_path, na_pcie, na_pool, na_image, na_ceph_conf, na_client;
    auto* n_add = ns->add_subcommand("add", "add a namespace; hosts see it without reconnecting");
    n_add->add_option("nqn", nqn, "subsystem NQN")->required();
    n_add->add_option("--backend", na.backend, "ram, null, file, pcie or rbd")
        ->capture_default_str()
        ->check(CLI::IsMember({"ram", "null", "file", "pcie", "rbd"}));
    na_nsid.option = n_add->add_option("--nsid", na_nsid.value, "NSID (default: the lowest free)");
    na_size.option = n_add->add_option("--size", na_size.value, "size: bytes or 512MiB, 1GiB, ... (file: optional)");
    na_block.option = n_add->add_option("--block-size", na_block.value, "512 or 4096 (default 4096)");
    na_uuid.option = n_add->add_option("--uuid", na_uuid.value, "namespace UUID (default: derived from NQN and NSID)");
    na_nguid.option = n_add->add_option("--nguid", na_nguid.value, "namespace NGUID, 32 hex digits");
    na_eui64.option = n_add->add_option("--eui64", na_eui64.value, "namespace EUI-64, 16 hex digits");
    na_path.option = n_add->add_option("--path", na_path.value, "file backend: regular file or block device");
    na_pcie.option = n_add->add_option("--pcie-address", na_pcie.value, "pcie backend: controller BDF, 0000:00:04.0");
    na_pcie_nsid.option = n_add->add_option("--pcie-nsid", na_pcie_nsid.value, "pcie backend: namespace on it");
    na_pool.option = n_add->add_option("--pool", na_pool.value, "rbd backend: the image's pool");
    na_image.option = n_add->add_option("--image", na_image.value, "rbd backend: the RBD image (its size is used)");
    na_ceph_conf.option = n_add->add_option("--ceph-conf", na_ceph_conf.value, "rbd backend: Ceph configuration file");
    na_client.option = n_add->add_option("--client", na_client.value, "rbd backend: cephx user (default admin)");
    na_ana_group.option = n_add->add_option("--ana-group", na_ana_group.value, "ANA group, 1..32 (default 1)");
    on(n_add, [&] {
        na.nsid = na_nsid.get();
        na.size = na_size.get();
        na.block_size = na_block.get();
        na.uuid = na_uuid.get();
        na.nguid = na_nguid.get();
        na.eui64 = na_eui64.get();
        na.path = na_path.get();
        na.pcie_address = na_pcie.get();
        na.pcie_nsid = na_pcie_nsid.get();
        na.pool = na_pool.get();
        na.image = na_image.get();
        na.ceph_conf = na_ceph_conf.get();
        na.client = na_client.get();
        na.ana_group = na_ana_group.get();
        json res = s.call("POST", subsystem_path(nqn) + "/namespaces", namespace_body(na));
        s.done(res, "namespace " + cell(res, "nsid") + " (uuid " + cell(res, "uuid") + ") added to " + nqn);
    });
    auto* n_list = ns->add_subcommand("list", "a subsystem's namespaces");
    n_list->add_option("nqn", nqn, "subsystem NQN")->required();
    on(n_list, [&] {
        json sub_view = s.call("GET", subsystem_path(nqn));
        json namespaces =
            sub_view.is_object() && sub_view.contains("namespaces") ? sub_view["namespaces"] : json::array();
        s.show(namespaces, namespaces_table);
    });
    uint32_t nsid = 0;
    std::string size;
    auto* n_show = ns->add_subcommand("show", "one namespace");
    n_show->add_option("nqn", nqn, "subsystem NQN")->required();
    n_show->add_option("nsid", nsid, "NSID")->required();
    on(n_show, [&] {
        s.show(s.call("GET", subsystem_path(nqn) + "/namespaces/" + std::to_string(nsid)),
               [](const json& n) { return namespaces_table(json::array({n})); });
    });
    auto* n_resize = ns->add_subcommand("resize", "grow a RAM or file namespace (shrinking is refused)");
    n_resize->add_option("nqn", nqn, "subsystem NQN")->required();
    n_resize->add_option("nsid", nsid, "NSID")->required();
    n_resize->add_option("size", size, "new size: bytes or 2GiB, ...")->required();
    on(n_resize, [&] {
        json res = s.call("PATCH", subsystem_path(nqn) + "/namespaces/" + std::to_string(nsid),
                          json{{"size", size_value(size)}});
        s.done(res, "namespace " + std::to_string(nsid) + " of " + nqn + " resized to " + size);
    });
    uint32_t ana_group = 0;
    auto* n_group = ns->add_subcommand("set-group", "move a namespace to another ANA group (hosts get an ANA notice)");
    n_group->add_option("nqn", nqn, "subsystem NQN")->required();
    n_group->add_option("nsid", nsid, "NSID")->required();
    n_group->add_option("group", ana_group, "ANA group, 1..32")->required();
    on(n_group, [&] {
        json res = s.call("PATCH", subsystem_path(nqn) + "/namespaces/" + std::to_string(nsid),
                          json{{"ana_group", ana_group}});
        s.done(res,
               "namespace " + std::to_string(nsid) + " of " + nqn + " is in ANA group " + std::to_string(ana_group));
    });
    auto* n_remove = ns->add_subcommand("remove", "remove a namespace (commands in flight complete first)");
    n_remove->add_option("nqn", nqn, "subsystem NQN")->required();
    n_remove->add_option("nsid", nsid, "NSID")->required();
    on(n_remove, [&] {
        s.done(s.call("DELETE", subsystem_path(nqn) + "/namespaces/" + std::to_string(nsid)),
               "namespace " + std::to_string(nsid) + " removed from " + nqn);
    });

    // ---- host
    auto* hostcmd = app.add_subcommand("host",
                                       "allowed hosts of a subsystem and their keys: add, set-keys, list, "
                                       "show, remove")
                        ->require_subcommand(1);
    // The key options of add and set-keys. A key on the command line is visible to other users
    // (ps, /proc); the -file forms read it from a file instead.
    host_key_args hk;
    auto key_options = [&hk](CLI::App* c, bool clearing) {
        for (const host_key_option& o : host_key_options) {
            c->add_option_function<std::string>(
                o.option, [k = &(hk.*o.key)](const std::string& v) { *k = v; },
                std::string(o.help) + " (visible in ps: prefer " + o.option + "-file)");
            c->add_option_function<std::string>(
                std::string(o.option) + "-file", [f = &(hk.*o.file)](const std::string& v) { *f = v; },
                std::string("file holding the key for ") + o.option);
            if (clearing)
                c->add_flag(std::string("--clear-") + (o.option + 2), hk.*o.clear,
                            std::string("remove the ") + (o.option + 2) + " key");
        }
    };
    auto* h_add = hostcmd->add_subcommand("add", "allow a host NQN to connect, with its keys if given");
    h_add->add_option("nqn", nqn, "subsystem NQN")->required();
    h_add->add_option("hostnqn", host, "host NQN")->required();
    key_options(h_add, false);
    on(h_add, [&] {
        json r = s.call("POST", subsystem_path(nqn) + "/hosts", host_body(host, hk));
        s.show(r, [&](const json& v) {
            return "host " + host + " allowed on " + nqn + "\n" + hosts_table(json::array({v}));
        });
    });
    auto* h_keys = hostcmd->add_subcommand(
        "set-keys",
        "set, replace (rotate) or clear a listed host's keys; keys not named stay as they are. Controllers already "
        "connected keep running; new connections and re-authentications use the new keys");
    h_keys->add_option("nqn", nqn, "subsystem NQN")->required();
    h_keys->add_option("hostnqn", host, "host NQN")->required();
    key_options(h_keys, true);
    on(h_keys, [&] {
        json r = s.call("PATCH", subsystem_path(nqn) + "/hosts/" + percent_encode(host), host_keys_patch_body(hk));
        s.show(r, [&](const json& v) {
            return "keys of host " + host + " on " + nqn + " set\n" + hosts_table(json::array({v}));
        });
    });
    auto* h_list =
        hostcmd->add_subcommand("list", "a subsystem's allowed hosts and which keys each has (never the keys)");
    h_list->add_option("nqn", nqn, "subsystem NQN")->required();
    on(h_list, [&] { s.show(s.call("GET", subsystem_path(nqn) + "/hosts"), hosts_table); });
    auto* h_show = hostcmd->add_subcommand("show", "one allowed host and which keys it has (never the keys)");
    h_show->add_option("nqn", nqn, "subsystem NQN")->required();
    h_show->add_option("hostnqn", host, "host NQN")->required();
    on(h_show, [&] {
        s.show(s.call("GET", subsystem_path(nqn) + "/hosts/" + percent_encode(host)),
               [](const json& v) { return hosts_table(json::array({v})); });
    });
    auto* h_remove =
        hostcmd->add_subcommand("remove", "disallow a host (its keys go too); its connections are closed at once");
    h_remove->add_option("nqn", nqn, "subsystem NQN")->required();
    h_remove->add_option("hostnqn", host, "host NQN")->required();
    on(h_remove, [&] {
        s.done(s.call("DELETE", subsystem_path(nqn) + "/hosts/" + percent_encode(host)),
               "host " + host + " removed from " + nqn);
    });

    // ---- listener, referral
    std::string address, listener_tls;
    uint16_t port = 0;
    auto endpoint_commands = [&](const std::string& noun, const std::string& route, uint16_t default_port,
                                 const std::string& what, std::function<json(const std::string&, uint16_t)> body,
                                 std::function<std::string(const json&)> table) {
        auto* cmd = app.add_subcommand(noun, what + ": add, list, remove")->require_subcommand(1);
        for (const char* verb : {"add", "remove"}) {
            auto* c = cmd->add_subcommand(verb, std::string(verb) + " a " + noun);
            c->add_option("address", address, "numeric IPv4 or IPv6 address")->required();
            c->add_option("port", port, "TCP port (default " + std::to_string(default_port) + ")");
            bool adding = std::string(verb) == "add";
            if (adding && noun == "listener")
                c->add_option("--tls", listener_tls,
                              "none (plain only, the default), allowed (TLS or plain) or required (TLS only)")
                    ->check(CLI::IsMember({"none", "allowed", "required"}));
            on(c, [&, adding, noun, route, default_port, body] {
                uint16_t p = port ? port : default_port;
                std::string key =
                    (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" + std::to_string(p);
                if (adding)
                    s.done(s.call("POST", route, body(address, p)), noun + " " + key + " added");
                else
                    s.done(s.call("DELETE", route + "/" + endpoint_segment(address, p)), noun + " " + key + " removed");
            });
        }
        auto* l = cmd->add_subcommand("list", "list " + noun + "s");
        on(l, [&, route, table] { s.show(s.call("GET", route), table); });
    };
    endpoint_commands(
        "listener", "/listeners", 4420, "TCP listeners (each also serves discovery)",
        [&listener_tls](const std::string& a, uint16_t p) { return listener_body(a, p, listener_tls); },
        listeners_table);
    endpoint_commands("referral", "/referrals", 8009, "discovery log referrals", referral_body, referrals_table);

    // ---- ana
    auto* ana =
        app.add_subcommand("ana", "ANA (multipath) states per listener and group: set, show")->require_subcommand(1);
    std::string ana_listener, ana_state;
    auto* a_set =
        ana->add_subcommand("set", "the state of an ANA group through one listener (hosts get an ANA notice)");
    a_set->add_option("--listener", ana_listener, "ADDRESS:PORT, [IPv6]:PORT or ADDRESS (port 4420)")->required();
    a_set->add_option("--group", ana_group, "ANA group, 1..32")->required();
    a_set
        ->add_option("--state", ana_state,
                     "optimized, non_optimized, inaccessible or persistent_loss (change: refused, transitional)")
        ->required();
    on(a_set, [&] {
        json res = s.call("PUT", "/listeners/" + listener_segment(ana_listener) + "/ana/" + std::to_string(ana_group),
                          json{{"state", ana_state}});
        s.done(res, "ANA group " + std::to_string(ana_group) + " through " + ana_listener + ": " + ana_state);
    });
    auto* a_show = ana->add_subcommand("show", "every listener's state of each ANA group in use, with its namespaces");
    on(a_show, [&] { s.show(ana_view(s.call("GET", "/listeners"), s.call("GET", "/subsystems")), ana_table); });

    // ---- controller
    auto* ctrl = app.add_subcommand("controller", "live controllers: list, drop")->require_subcommand(1);
    std::string list_nqn;
    auto* c_list = ctrl->add_subcommand("list", "live controllers of one subsystem, or of every subsystem");
    c_list->add_option("nqn", list_nqn, "subsystem NQN (default: all)");
    on(c_list, [&] {
        if (!list_nqn.empty()) {
            s.show(s.call("GET", subsystem_path(list_nqn) + "/controllers"),
                   [](const json& c) { return controllers_table(c); });
            return;
        }
        json all = json::array();
        for (const auto& sv : s.call("GET", "/subsystems"))
            if (sv.contains("controllers") && sv["controllers"].is_array())
                for (auto c : sv["controllers"]) {
                    c["subsystem"] = sv.value("nqn", "");
                    all.push_back(c);
                }
        s.show(all, [](const json& c) { return controllers_table(c, true); });
    });
    uint32_t cntlid = 0;
    auto* c_drop = ctrl->add_subcommand("drop", "close a controller's connections now (the host may reconnect)");
    c_drop->add_option("nqn", nqn, "subsystem NQN")->required();
    c_drop->add_option("cntlid", cntlid, "controller ID")->required()->check(CLI::Range(0, 0xffff));
    on(c_drop, [&] {
        s.done(s.call("DELETE", subsystem_path(nqn) + "/controllers/" + std::to_string(cntlid)),
               "controller " + std::to_string(cntlid) + " of " + nqn + " dropped");
    });

    // ---- devices
    auto* dev = app.add_subcommand("devices", "local NVMe PCI devices: list (default), attach, detach (vfio-pci)");
    std::vector<std::string> bdfs;
    bool force = false, local = false, dry_run = false, quiet = false;
    local_sysfs where;
    auto add_local_options = [&](CLI::App* c) {
        c->add_flag("--local", local,
                    "work on this machine's sysfs directly (env/pci, the code ferryd runs), without ferryd: "
                    "for deploy/setup.sh before ferryd starts; needs root to change bindings");
        c->add_option("--sysfs", where.sysfs, "--local: sysfs root (a fake tree for tests)")->capture_default_str();
        c->add_option("--mounts", where.mounts, "--local: mount table to check devices against")->capture_default_str();
        c->add_option("--swaps", where.swaps, "--local: active swap areas (missing file: none)")->capture_default_str();
    };
    add_local_options(dev);
    auto devices_list = [&] {
        if (local)
            s.show(local_devices(where), local_devices_text);
        else
            s.show(s.call("GET", "/devices"), devices_table);
    };
    dev->callback([&] {  // runs after its subcommands' callbacks: `ferryctl devices` alone lists
        if (!action) action = devices_list;
    });
    auto* d_list =
        dev->add_subcommand("list", "NVMe devices: address, IDs, driver, IOMMU group, NUMA node, block devices");
    add_local_options(d_list);
    on(d_list, devices_list);
    for (const char* verb : {"attach", "detach"}) {
        bool attach = std::string(verb) == "attach";
        auto* c = dev->add_subcommand(
            verb, attach ? "bind devices to vfio-pci for ferry (refused while in use, not NVMe, or in a shared IOMMU "
                           "group)"
                         : "give devices on vfio-pci back to the kernel nvme driver");
        c->add_option("bdf", bdfs,
                      "PCI address(es), 0000:00:04.0 (the API takes one; --local: none = every NVMe device " +
                          std::string(attach ? "not in use)" : "on vfio-pci)"));
        add_local_options(c);
        if (attach)
            c->add_flag("--force", force,
                        "--local only: attach even if a file system on it is mounted, it is swap or has holders");
        if (attach)
            c->add_flag("--quiet", quiet,
                        "--local only: print only the bindings, not the plan's refusals and warnings");
        c->add_flag("--dry-run", dry_run,
                    "--local only: print the decision (a 'would ...' line per device), change nothing");
        on(c, [&, attach] {
            if (local) {
                int rc = attach ? local_attach(bdfs, force, dry_run, quiet, where, std::cout, std::cerr)
                                : local_detach(bdfs, dry_run, where, std::cout, std::cerr);
                std::cout.flush();
                if (rc != 0) throw local_refused();
                return;
            }
            if (force || dry_run || quiet) throw usage_error("devices --force, --dry-run, --quiet: only with --local");
            if (bdfs.size() != 1) throw usage_error("devices attach|detach: the API takes exactly one PCI address");
            std::string verb_text = attach ? "attach" : "detach";
            json res = s.call("POST", "/devices/" + percent_encode(bdfs[0]) + "/" + verb_text);
            s.done(res, bdfs[0] + (attach ? " attached (driver " : " detached (driver ") + cell(res, "driver") + ")");
        });
    }

    // ---- stats, config
    unsigned watch_s = 0;
    auto* st = app.add_subcommand("stats", "counters per subsystem, namespace, controller, queue and reactor");
    st->add_option("--watch", watch_s, "repeat every SECONDS with per-second rates until Ctrl-C")
        ->check(CLI::Range(1, 3600));
    on(st, [&] {
        if (watch_s)
            watch_stats(s, watch_s);
        else
            s.show(s.call("GET", "/stats"), [](const json& j) { return stats_text(j); });
    });
    auto* cfg = app.add_subcommand("config", "the current state in config-file form (JSON)");
    on(cfg, [&] {
        json c = s.call("GET", "/config");
        std::cout << c.dump(2) << "\n";
    });

    app.footer(help_footer);  // after the subcommands: they would inherit it
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? exit_ok : exit_usage;
    }
    try {
        if (action) action();
        return exit_ok;
    } catch (const local_refused&) {
        return exit_api_refused;
    } catch (const usage_error& e) {
        std::cerr << "ferryctl: " << e.what() << "\n";
        return exit_usage;
    } catch (const auth_error& e) {
        std::cerr << "ferryctl: " << e.what() << "\n";
        return exit_auth;
    } catch (const connect_error& e) {
        std::cerr << "ferryctl: " << e.what() << "\n";
        return exit_unreachable;
    } catch (const api_refused& e) {
        std::cerr << "ferryctl: " << e.what() << "\n";
        return exit_api_refused;
    } catch (const std::exception& e) {
        std::cerr << "ferryctl: " << e.what() << "\n";
        return exit_api_refused;
    }
}
