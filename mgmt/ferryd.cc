// ferryd: the NVMe/TCP target daemon.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "env/thread.hh"
#include "mgmt/api.hh"
#include "mgmt/config.hh"
#include "mgmt/control_plane.hh"
#include "mgmt/gateway_group.hh"
#include "target/target.hh"
#include "transport/listener.hh"
#include "transport/reactor.hh"

int main(int argc, char** argv) {
    CLI::App app{
        "ferryd: NVMe-over-Fabrics TCP target. Serves the subsystems, namespaces and listeners of a JSON\n"
        "configuration file (see deploy/demo.json) until SIGINT or SIGTERM."};
    std::string config_path, state_path, cpus, log_level = "info";
    size_t pool_mib = 64, max_connections = 1024, max_pending_per_address = 32, max_pending = 256;
    size_t max_per_listener = 0;
    unsigned idle_spin_us = 200;
    uint64_t max_ram_mib = 0;
    unsigned r2t_timeout_s = ferry::transport::default_r2t_timeout_ns / 1'000'000'000ull;
    size_t conn_buffer_mib = 0;
    std::string engine = "posix";
    std::string c2h_success = "sqflow";
    const std::string default_congestion = "cubic";
    std::string congestion = default_congestion;
    app.add_option("-c,--config", config_path, "JSON configuration file")->required();
    app.add_option("--state-file", state_path,
                   "where the REST API keeps the live state, rewritten atomically after every change; when it "
                   "exists ferryd starts from it instead of --config (default: the --config file itself). Host keys "
                   "it holds are files in keys/ next to it (directory 0700, files 0600), which it references");
    app.add_option("--cpus", cpus,
                   "CPUs for the poll-mode reactor threads, one reactor per CPU, each pinned to it "
                   "(e.g. 0 or 0,1 or 0-3); default: one unpinned reactor");
    app.add_option("--pool-mib", pool_mib,
                   "DMA buffer pool per reactor in MiB (hugepages when reserved); at least 16: one 8 MiB "
                   "transfer (MDTS) and the queues' reserved chunks")
        ->capture_default_str()
        ->check(CLI::Range(16, 65536));
    app.add_option("--max-connections", max_connections, "connections accepted at once, all reactors together")
        ->capture_default_str()
        ->check(CLI::Range(1, 65536));
    app.add_option("--max-connections-per-listener", max_per_listener,
                   "connections accepted at once through one listener (0: no cap of its own, only "
                   "--max-connections), so that one listener cannot take every slot from the others")
        ->capture_default_str()
        ->check(CLI::Range(0, 65536));
    app.add_option("--max-pending-per-address", max_pending_per_address,
                   "connections from one source address that have not completed ICReq, TLS, Connect and "
                   "authentication; at the cap "
                   "the oldest of them is closed for a newcomer (kept below --max-pending)")
        ->capture_default_str()
        ->check(CLI::Range(1, 65536));
    app.add_option("--max-pending", max_pending,
                   "connections from all addresses that have not completed ICReq, TLS, Connect and authentication; at "
                   "the cap the "
                   "oldest of them is closed for a newcomer (kept below --max-connections)")
        ->capture_default_str()
        ->check(CLI::Range(1, 65536));
    app.add_option("--r2t-timeout-s", r2t_timeout_s,
                   "seconds a host may take to send the data of a write after the target's R2T; a write that "
                   "misses it closes its connection and frees its buffers")
        ->capture_default_str()
        ->check(CLI::Range(1, 3600));
    app.add_option("--conn-buffer-mib", conn_buffer_mib,
                   "pool MiB one connection's transfers may hold at once beyond each queue entry's reserved 8 KiB "
                   "(0 = a quarter of --pool-mib; never less than one 8 MiB transfer)")
        ->capture_default_str()
        ->check(CLI::Range(0, 65536));
    app.add_option("--idle-spin-us", idle_spin_us,
                   "microseconds a reactor keeps polling after its last work before it blocks (0 = block at once)")
        ->capture_default_str();
    app.add_option("--socket-engine", engine,
                   "how reactors drive sockets: posix (non-blocking recv/sendmsg per connection) or uring "
                   "(io_uring: multishot receives into 8 MiB of provided buffers per reactor, one system "
                   "call per reactor pass for all connections; Linux 6.0 or later, else posix)")
        ->capture_default_str()
        ->check(CLI::IsMember({"posix", "uring"}));
    app.add_option("--c2h-success", c2h_success,
                   "when a successful read ends with its C2HData PDU (SUCCESS flag) instead of a CapsuleResp: "
                   "sqflow = only on queues whose host disabled SQ flow control (as NVMe/TCP and Linux nvmet "
                   "have it; Linux hosts do so when discovery offers it); always = also on I/O queues that keep it, "
                   "as SPDK's target does (outside the spec: those completions carry no SQHD, which Linux and SPDK "
                   "hosts do not use over TCP; doubles 4 KiB reads at queue depth 128 for SPDK's host)")
        ->capture_default_str()
        ->check(CLI::IsMember({"sqflow", "always"}));
    app.add_option("--tcp-congestion", congestion,
                   "TCP congestion control of the NVMe/TCP connections (set on each listening socket, inherited by "
                   "the connections accepted there), or system to keep net.ipv4.tcp_congestion_control. Default "
                   "cubic: BBR, a common system default, paces each connection from a kernel timer, and a reactor's "
                   "bursts of completions then cost the target CPU timer interrupts (bench/README.md: 16 KiB and "
                   "128 KiB reads 1.6x with cubic on one core); if cubic cannot be set, the system's stays")
        ->capture_default_str();
    app.add_option("--max-ram-mib", max_ram_mib,
                   "memory in MiB that RAM namespaces may take, all together (a host may write every block); "
                   "a configuration asking more is refused (exit status 2). Default: physical memory minus a "
                   "reserve (1/16 of it, at least 1 GiB) minus the buffer pools of all reactors")
        ->check(CLI::Range(uint64_t(1), uint64_t(1) << 40));
    std::string dhchap_dhgroups = "ffdhe2048,ffdhe3072,ffdhe4096,ffdhe6144,ffdhe8192,null";
    app.add_option("--dhchap-dhgroups", dhchap_dhgroups,
                   "DH-HMAC-CHAP: the DH groups the controller picks from those a host offers, in order of "
                   "preference (null, ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144, ffdhe8192)")
        ->capture_default_str();
    std::string gateway_path;
    app.add_option("--gateway", gateway_path,
                   "JSON file making this ferryd a gateway of a gateway group: it serves one subsystem of rbd "
                   "images with other gateways, coordinated through a RADOS object (deploy/gateway-group.md): the "
                   "ANA groups follow who holds the images' locks, and a dead gateway's groups are taken over")
        ->check(CLI::ExistingFile);
    app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
        ->capture_default_str()
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
    CLI11_PARSE(app, argc, argv);

    auto logger = spdlog::stderr_color_mt("ferryd");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    spdlog::set_level(spdlog::level::from_str(log_level));

    // Every connection is a descriptor: a shell's soft limit (often 1024) would make accept fail
    // below --max-connections. Take the hard limit (systemd's unit sets LimitNOFILE).
    if (rlimit nofile{}; ::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        if (nofile.rlim_cur < nofile.rlim_max) {
            nofile.rlim_cur = nofile.rlim_max;
            ::setrlimit(RLIMIT_NOFILE, &nofile);
            ::getrlimit(RLIMIT_NOFILE, &nofile);
        }
        if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < max_connections + 64)
            spdlog::warn(
                "ferryd: open files limit {} is below --max-connections {} (+64 for the rest); accept will "
                "fail before that many connections are open",
                uint64_t(nofile.rlim_cur), max_connections);
    }

    ferry::mgmt::config_file file;
    std::optional<ferry::mgmt::gateway_config> gateway_cfg;
    ferry::target::target_config& cfg = file.target;
    ferry::mgmt::ram_budget budget;
    std::vector<int> cpu_list;
    std::vector<uint8_t> dhgroups;
    if (state_path.empty()) state_path = config_path;
    std::string loaded_from = config_path;
    try {
        if (state_path != config_path && ::access(state_path.c_str(), F_OK) == 0) loaded_from = state_path;
        file = ferry::mgmt::load_config(loaded_from);
        for (const auto& w : file.warnings) spdlog::warn("{}: {}", loaded_from, w);
        struct stat st {};
        if (file.inline_keys && ::stat(loaded_from.c_str(), &st) == 0 && (st.st_mode & 077))
            spdlog::warn(
                "{}: holds host keys inline and group or others may read it (mode {:04o}); chmod 600 it, "
                "or give the keys as \"*_file\" references",
                loaded_from, st.st_mode & 07777);
        if (!cpus.empty()) cpu_list = ferry::env::parse_cpu_list(cpus);
        dhgroups = ferry::target::auth::parse_dhgroups(dhchap_dhgroups);
        if (!gateway_path.empty()) gateway_cfg = ferry::mgmt::load_gateway_config(gateway_path);
        if (congestion == "system") congestion.clear();
        if (!congestion.empty()) {
            if (const std::string err = ferry::transport::congestion_control_error(congestion); !err.empty()) {
                const std::string why = "TCP congestion control '" + congestion + "': " + err + " (available: " +
                                        ferry::transport::available_congestion_controls() + ")";
                if (congestion != default_congestion) throw std::runtime_error("--tcp-congestion: " + why);
                spdlog::warn("ferryd: {}; NVMe/TCP connections keep the system's ({})", why,
                             ferry::transport::system_congestion_control());
                congestion.clear();
            }
        }
        const uint64_t pools = uint64_t(pool_mib << 20) * std::max<size_t>(cpu_list.size(), 1);
        budget = max_ram_mib
                     ? ferry::mgmt::ram_budget{max_ram_mib << 20, "--max-ram-mib " + std::to_string(max_ram_mib)}
                     : ferry::mgmt::default_ram_budget(pools);
        ferry::mgmt::check_ram_budget(cfg, budget, loaded_from);
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 2;
    }

    // Block the stop signals in every thread; the main thread waits for them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    try {
        ferry::target::target tgt(cfg);
        tgt.set_dhchap_dhgroups(dhgroups);
        if (c2h_success == "always") tgt.set_c2h_success(ferry::target::target::c2h_success_policy::always);
        // Before the reactors (whose threads pin themselves) and the listeners: librados' threads
        // get this thread's affinity, and no host sees a group optimized before its locks are held.
        std::unique_ptr<ferry::mgmt::gateway_group> gateway;
        if (gateway_cfg) {
            try {
                gateway = ferry::mgmt::make_gateway_group(*gateway_cfg, tgt);
            } catch (const std::exception& e) {
                spdlog::error("ferryd: {}", e.what());
                return 2;
            }
        }
        std::vector<std::unique_ptr<ferry::transport::reactor>> reactors;
        if (cpu_list.empty()) cpu_list.push_back(-1);
        for (size_t i = 0; i < cpu_list.size(); ++i) {
            ferry::transport::reactor_options o;
            o.cpu = cpu_list[i];
            o.pool_bytes = pool_mib << 20;
            o.idle_spin_us = idle_spin_us;
            o.r2t_timeout_ns = uint64_t(r2t_timeout_s) * 1'000'000'000ull;
            o.connection_buffer_bytes = conn_buffer_mib << 20;
            o.engine =
                engine == "uring" ? ferry::transport::socket_engine::uring : ferry::transport::socket_engine::posix;
            reactors.push_back(std::make_unique<ferry::transport::reactor>(static_cast<unsigned>(i), o));
        }
        std::vector<ferry::transport::reactor*> rp;
        for (auto& r : reactors) rp.push_back(r.get());
        ferry::transport::acceptor acc(rp, tgt, {max_connections, max_pending_per_address, max_pending, max_per_listener});
        acc.set_congestion_control(congestion);
        const std::string system_congestion = ferry::transport::system_congestion_control();
        spdlog::info("ferryd: NVMe/TCP connections use TCP congestion control {} (system default {})",
                     congestion.empty() ? system_congestion : congestion, system_congestion);
        for (const auto& l : cfg.listeners) acc.listen({l.address, l.port, l.tls});
        for (auto& r : reactors) r->start();
        acc.start();
        if (gateway) gateway->start();
        for (const auto& s : tgt.subsystems()) {
            std::string hosts = s->host_allowed("") ? "any host" : "allowed hosts only";
            for (const auto& [nsid, n] : s->namespaces())
                spdlog::info("subsystem {} ({}): namespace {}: {} bytes {} ({} x {} B)", s->nqn(), hosts, nsid,
                             n.blocks * n.block_size, n.store->describe(), n.blocks, n.block_size);
        }

        // The REST API: its own thread, started once the reactors serve.
        std::unique_ptr<ferry::mgmt::control_plane> control;
        std::unique_ptr<ferry::mgmt::api_service> api;
        std::unique_ptr<ferry::mgmt::api_server> api_http;
        if (file.management.enabled) {
            try {
                ferry::mgmt::api_options o;
                o.management = file.management;
                o.state_file = state_path;
                o.token_file = file.management.token_file;
                if (o.token_file.empty()) {
                    const size_t slash = state_path.rfind('/');
                    o.token_file =
                        (slash == std::string::npos ? std::string(".") : state_path.substr(0, slash)) + "/api-token";
                }
                o.token_file = std::filesystem::absolute(o.token_file).lexically_normal().string();
                o.ram = budget;
                o.key_files = file.key_files;
                bool created = false;
                const std::string token = ferry::mgmt::load_or_create_token(o.token_file, created);
                if (created) spdlog::info("ferryd: created the REST API token file {} (mode 0600)", o.token_file);
                control = ferry::mgmt::make_target_control_plane(tgt, acc, rp);
                api = std::make_unique<ferry::mgmt::api_service>(o, *control, token);
                api_http = std::make_unique<ferry::mgmt::api_server>(*api);
                api_http->start();
                const std::string& a = o.management.address;
                spdlog::info("ferryd: REST API on {}://{}:{} (token file {})", api_http->tls() ? "https" : "http",
                             a.find(':') != std::string::npos ? "[" + a + "]" : a, api_http->port(), o.token_file);
                spdlog::info("ferryd: state file {}", state_path);
            } catch (const std::exception& e) {
                spdlog::error("ferryd: {}", e.what());
                if (gateway) gateway->stop();
                acc.stop();
                for (auto& r : reactors) r->stop();
                return 1;
            }
        }
        spdlog::info("ferryd: ready: {} subsystem(s), {} listener(s), {} reactor(s)", tgt.subsystems().size(),
                     cfg.listeners.size(), reactors.size());

        int sig = 0;
        sigwait(&stop_signals, &sig);
        spdlog::info("ferryd: {} received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        if (api_http) api_http->stop();  // no change runs while the target goes
        if (gateway) gateway->stop();     // hands its groups over while hosts are still connected
        acc.stop();
        for (auto& r : reactors) r->stop();
    } catch (const std::exception& e) {
        spdlog::error("ferryd: {}", e.what());
        return 1;
    }
    spdlog::info("ferryd: stopped");
    return 0;
}
