// GET /api/v1/stats and GET /metrics: one walk over the target's counters (target/stats.hh)
// and the reactors, rendered as JSON or as Prometheus text. Runs on the management thread;
// the counters are read with relaxed loads under each namespace's control-path lock, so the
// I/O path is never stopped.
#include "mgmt/stats.hh"

#include <fmt/format.h>

#include <map>

#include "env/thread.hh"
#include "target/target.hh"
#include "transport/reactor.hh"

namespace ferry::mgmt {
namespace {

using target::io_totals;

// One controller of a subsystem as its live I/O queues' counters show it.
struct queue_counters {
    std::map<uint32_t, io_totals> by_nsid;
    io_totals total;
};
struct controller_counters {
    std::string hostnqn;
    std::map<uint16_t, queue_counters> queues;  // by qid
    io_totals total;
};
struct namespace_counters {
    uint32_t nsid = 0;
    io_totals total;  // closed queues included
};
struct subsystem_counters {
    std::string nqn;
    std::vector<namespace_counters> namespaces;
    std::map<uint16_t, controller_counters> controllers;  // by cntlid
    io_totals total;
};

std::vector<subsystem_counters> collect(target::target& tgt, uint64_t now_ns) {
    std::vector<subsystem_counters> out;
    for (const auto& sub : tgt.subsystems()) {
        subsystem_counters s;
        s.nqn = sub->nqn();
        for (const auto& [nsid, n] : sub->namespaces()) {
            std::vector<target::ns_stats::queue_snapshot> live;
            const io_totals t = n.stats->read(now_ns, live);
            s.namespaces.push_back({nsid, t});
            s.total += t;
            for (const auto& q : live) {
                controller_counters& c = s.controllers[q.labels.cntlid];
                c.hostnqn = q.labels.hostnqn;
                c.total += q.io;
                queue_counters& qc = c.queues[q.labels.qid];
                qc.by_nsid[q.labels.nsid] += q.io;
                qc.total += q.io;
            }
        }
        out.push_back(std::move(s));
    }
    return out;
}

nlohmann::json io_json(const io_totals& t) {
    nlohmann::json errors = nlohmann::json::object();
    for (unsigned i = 0; i < target::error_kinds; ++i)
        errors[target::error_kind_name(static_cast<target::error_kind>(i))] = t.errors[i];
    uint64_t count = 0;
    for (uint64_t b : t.latency) count += b;
    return {
        {"commands", t.commands()},
        {"reads", t.reads},
        {"writes", t.writes},
        {"others", t.others},
        {"bytes_read", t.bytes_read},
        {"bytes_written", t.bytes_written},
        {"errors", t.error_count()},
        {"errors_by_status", errors},
        {"latency", {{"count", count}, {"sum_ns", t.latency_sum_ns}, {"buckets", t.latency}}},
    };
}

// ---- Prometheus text exposition format 0.0.4 ----

// Label values: backslash, double quote and line feed are escaped.
std::string escape_label(std::string_view v) {
    std::string o;
    o.reserve(v.size());
    for (char c : v) {
        if (c == '\\')
            o += "\\\\";
        else if (c == '"')
            o += "\\\"";
        else if (c == '\n')
            o += "\\n";
        else
            o += c;
    }
    return o;
}

struct label {
    std::string_view name;
    std::string value;
};
using labels = std::vector<label>;

std::string render(const labels& ls) {
    if (ls.empty()) return {};
    std::string o = "{";
    for (size_t i = 0; i < ls.size(); ++i) {
        if (i) o += ',';
        o += fmt::format("{}=\"{}\"", ls[i].name, escape_label(ls[i].value));
    }
    return o + "}";
}

class exposition {
public:
    // HELP and TYPE once per family, before its first sample.
    void family(std::string_view name, std::string_view type, std::string_view help) {
        _out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }
    void sample(std::string_view name, const labels& ls, uint64_t v) {
        _out += fmt::format("{}{} {}\n", name, render(ls), v);
    }
    void sample(std::string_view name, const labels& ls, double v) {
        _out += fmt::format("{}{} {}\n", name, render(ls), v);
    }
    // Histogram samples of `name` (seconds) from the log2 microsecond buckets.
    void histogram(std::string_view name, const labels& ls, const io_totals& t) {
        uint64_t cumulative = 0;
        labels with_le = ls;
        with_le.push_back({"le", {}});
        for (unsigned i = 0; i < target::latency_buckets; ++i) {
            cumulative += t.latency[i];
            with_le.back().value = i + 1 < target::latency_buckets
                                       ? fmt::format("{}", double(target::latency_bucket_bound_us(i)) / 1e6)
                                       : "+Inf";
            sample(fmt::format("{}_bucket", name), with_le, cumulative);
        }
        sample(fmt::format("{}_sum", name), ls, double(t.latency_sum_ns) / 1e9);
        sample(fmt::format("{}_count", name), ls, cumulative);
    }
    std::string take() { return std::move(_out); }

private:
    std::string _out;
};

// The I/O families of one level (namespace or queue): each a function of the series list.
struct io_series {
    labels ls;
    const io_totals* io;
};

void io_families(exposition& x, std::string_view level, std::string_view what, const std::vector<io_series>& series,
                 bool zero_errors) {
    const std::string p = fmt::format("ferry_{}_", level);
    x.family(p + "commands_total", "counter",
             fmt::format("I/O commands the store carried out, by op (read, write, other), {}", what));
    for (const auto& s : series) {
        const std::pair<const char*, uint64_t> ops[] = {
            {"read", s.io->reads}, {"write", s.io->writes}, {"other", s.io->others}};
        for (const auto& [op, n] : ops) {
            labels ls = s.ls;
            ls.push_back({"op", op});
            x.sample(p + "commands_total", ls, n);
        }
    }
    x.family(p + "read_bytes_total", "counter", fmt::format("Bytes read by successful Read commands, {}", what));
    for (const auto& s : series) x.sample(p + "read_bytes_total", s.ls, s.io->bytes_read);
    x.family(p + "written_bytes_total", "counter", fmt::format("Bytes written by successful Write commands, {}", what));
    for (const auto& s : series) x.sample(p + "written_bytes_total", s.ls, s.io->bytes_written);
    x.family(p + "errors_total", "counter", fmt::format("I/O commands completed with an error, by status, {}", what));
    for (const auto& s : series) {
        for (unsigned i = 0; i < target::error_kinds; ++i) {
            if (!zero_errors && s.io->errors[i] == 0) continue;
            labels ls = s.ls;
            ls.push_back({"status", target::error_kind_name(static_cast<target::error_kind>(i))});
            x.sample(p + "errors_total", ls, s.io->errors[i]);
        }
    }
    x.family(p + "latency_seconds", "histogram",
             fmt::format("Time from a command's arrival to its completion at the target, {}", what));
    for (const auto& s : series) x.histogram(p + "latency_seconds", s.ls, *s.io);
}

}  // namespace

nlohmann::json stats_json(const runtime& rt) {
    const uint64_t now = env::now_ns();
    nlohmann::json bounds = nlohmann::json::array();
    for (unsigned i = 0; i + 1 < target::latency_buckets; ++i) bounds.push_back(target::latency_bucket_bound_us(i));
    nlohmann::json subsystems = nlohmann::json::array();
    for (const auto& s : collect(rt.tgt, now)) {
        nlohmann::json namespaces = nlohmann::json::array();
        for (const auto& n : s.namespaces) {
            nlohmann::json j = io_json(n.total);
            j["nsid"] = n.nsid;
            namespaces.push_back(std::move(j));
        }
        nlohmann::json controllers = nlohmann::json::array();
        for (const auto& [cntlid, c] : s.controllers) {
            nlohmann::json queues = nlohmann::json::array();
            for (const auto& [qid, q] : c.queues) {
                nlohmann::json per_ns = nlohmann::json::array();
                for (const auto& [nsid, io] : q.by_nsid) {
                    nlohmann::json j = io_json(io);
                    j["nsid"] = nsid;
                    per_ns.push_back(std::move(j));
                }
                nlohmann::json j = io_json(q.total);
                j["qid"] = qid;
                j["namespaces"] = std::move(per_ns);
                queues.push_back(std::move(j));
            }
            nlohmann::json j = io_json(c.total);
            j["cntlid"] = cntlid;
            j["hostnqn"] = c.hostnqn;
            j["queues"] = std::move(queues);
            controllers.push_back(std::move(j));
        }
        nlohmann::json j = io_json(s.total);
        j["nqn"] = s.nqn;
        j["namespaces"] = std::move(namespaces);
        j["controllers"] = std::move(controllers);
        subsystems.push_back(std::move(j));
    }
    nlohmann::json reactors = nlohmann::json::array();
    for (const transport::reactor* r : rt.reactors) {
        const uint64_t started = r->started_ns();
        const uint64_t up = started && now > started ? now - started : 0;
        const uint64_t busy = r->busy_ns();
        reactors.push_back({
            {"id", r->id()},
            {"connections", r->connection_count()},
            {"busy_ns", busy},
            {"uptime_ns", up},
            {"busy_share", up ? std::min(1.0, double(busy) / double(up)) : 0.0},
            {"pool_chunks_in_use", r->pool_chunks_in_use()},
            {"pool_chunks_total", r->pool_chunks_total()},
        });
    }
    return {
        {"time_ns", now},
        {"latency_bucket_bounds_us", std::move(bounds)},
        {"subsystems", std::move(subsystems)},
        {"reactors", std::move(reactors)},
    };
}

std::string metrics_text(const runtime& rt) {
    const auto all = collect(rt.tgt, env::now_ns());
    exposition x;

    std::vector<io_series> per_ns;
    std::vector<io_series> per_queue;
    for (const auto& s : all) {
        for (const auto& n : s.namespaces)
            per_ns.push_back({{{"subsystem", s.nqn}, {"nsid", std::to_string(n.nsid)}}, &n.total});
        for (const auto& [cntlid, c] : s.controllers)
            for (const auto& [qid, q] : c.queues)
                for (const auto& [nsid, io] : q.by_nsid)
                    per_queue.push_back({{{"subsystem", s.nqn},
                                          {"nsid", std::to_string(nsid)},
                                          {"cntlid", std::to_string(cntlid)},
                                          {"qid", std::to_string(qid)}},
                                         &io});
    }
    io_families(x, "namespace", "per namespace over ferryd's life (closed queues included)", per_ns, true);
    io_families(x, "queue", "per connected I/O queue and namespace", per_queue, false);

    x.family("ferry_subsystem_controllers", "gauge", "Controllers with I/O queues connected");
    for (const auto& s : all)
        x.sample("ferry_subsystem_controllers", {{"subsystem", s.nqn}}, uint64_t(s.controllers.size()));

    x.family("ferry_reactor_connections", "gauge", "Transport connections served by the reactor");
    for (const auto* r : rt.reactors)
        x.sample("ferry_reactor_connections", {{"reactor", std::to_string(r->id())}}, uint64_t(r->connection_count()));
    x.family("ferry_reactor_busy_seconds_total", "counter",
             "Time the reactor spent in loop passes that found work (its rate is the busy share)");
    for (const auto* r : rt.reactors)
        x.sample("ferry_reactor_busy_seconds_total", {{"reactor", std::to_string(r->id())}},
                 double(r->busy_ns()) / 1e9);
    x.family("ferry_reactor_pool_chunks_in_use", "gauge", "Buffer pool chunks held by the reactor's connections");
    for (const auto* r : rt.reactors)
        x.sample("ferry_reactor_pool_chunks_in_use", {{"reactor", std::to_string(r->id())}},
                 uint64_t(r->pool_chunks_in_use()));
    x.family("ferry_reactor_pool_chunks", "gauge", "Buffer pool chunks of the reactor (8 KiB each)");
    for (const auto* r : rt.reactors)
        x.sample("ferry_reactor_pool_chunks", {{"reactor", std::to_string(r->id())}}, uint64_t(r->pool_chunks_total()));
    return x.take();
}

}  // namespace ferry::mgmt
