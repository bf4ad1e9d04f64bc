// ferry-perf: a user-space NVMe/TCP initiator that generates load and verifies data.
#include <pthread.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "env/thread.hh"
#include "nvme/spec.hh"
#include "tools/perf/host_queue.hh"
#include "tools/perf/workload.hh"

namespace fp = ferry::perf;
namespace nvme = ferry::nvme;

namespace {

struct options {
    std::string addr = "127.0.0.1";
    uint16_t port = 4420;
    std::string nqn;
    std::string hostnqn;
    uint32_t nsid = 1;
    std::string rw = "randread";
    unsigned mix = 50;
    std::string bs = "4k";
    unsigned qd = 32;
    unsigned queues = 1;
    double seconds = 10;
    std::string size, offset = "0";
    std::string digest;
    std::string cpus;
    bool verify = false;
    std::string verify_state;
    std::string json;
    uint64_t seed = 0;
};

struct slot {
    fp::io_request io{};
    uint64_t start_ns = 0;
    uint8_t* buf = nullptr;
};

struct queue_ctx {
    std::unique_ptr<fp::host_queue> q;
    std::vector<slot> slots;
    std::vector<uint16_t> free_cids;
    std::vector<uint8_t> memory;
};

struct worker_result {
    fp::histogram lat;
    uint64_t reads = 0, writes = 0, bytes = 0, errors = 0;
    uint64_t verified_blocks = 0, verify_failures = 0;
    uint64_t polls = 0, empty_polls = 0;  // loop passes, and those that reaped nothing
    std::string first_error;
};

struct run_params {
    uint32_t nsid, lba_size, nlb, bs;
    unsigned qd;
    uint64_t deadline_ns;
};

void run_worker(std::vector<queue_ctx*> queues, fp::generator gen, std::optional<fp::verify_map>& vmap,
                const run_params& p, int cpu, worker_result& res) {
    if (cpu >= 0) ferry::env::pin_current_thread(cpu);
    auto note_error = [&](const std::string& what) {
        ++res.errors;
        if (res.first_error.empty()) res.first_error = what;
    };
    auto complete = [&](queue_ctx& qc, const fp::completion& c) {
        slot& s = qc.slots[c.cid];
        res.lat.record(ferry::env::now_ns() - s.start_ns);
        if (c.status != 0) {
            note_error(fmt::format("{} LBA {} ({} blocks): NVMe status {:#x}", s.io.is_read ? "read" : "write",
                                   s.io.slba, s.io.nlb, c.status));
        } else {
            s.io.is_read ? ++res.reads : ++res.writes;
            res.bytes += p.bs;
            if (vmap) {
                for (uint32_t i = 0; i < s.io.nlb; ++i) {
                    const uint64_t lba = s.io.slba + i;
                    uint8_t* blk = s.buf + size_t(i) * p.lba_size;
                    if (s.io.is_read) {
                        uint32_t found = 0;
                        auto r = fp::check_block(blk, p.lba_size, lba, vmap->expected(lba), &found);
                        ++res.verified_blocks;
                        if (r != fp::verify_result::ok) {
                            ++res.verify_failures;
                            if (res.verify_failures <= 10)
                                std::fprintf(stderr, "ferry-perf: verify: LBA %llu: %s (generation found %u, expected %u)\n",
                                             static_cast<unsigned long long>(lba), fp::verify_name(r), found,
                                             vmap->expected(lba));
                        }
                    } else {
                        fp::block_stamp st;
                        std::memcpy(&st, blk, sizeof(st));
                        vmap->written(lba, st.generation);
                    }
                }
                vmap->release(s.io.slba, s.io.nlb);
            }
        }
        qc.free_cids.push_back(c.cid);
    };
    auto submit_more = [&](queue_ctx& qc) {
        int misses = 0;
        while (!qc.free_cids.empty() && misses < 8) {
            fp::io_request io = gen.next();
            if (vmap && !vmap->try_claim(io.slba, io.nlb)) {
                ++misses;  // overlaps an I/O in flight: pick another
                continue;
            }
            const uint16_t cid = qc.free_cids.back();
            qc.free_cids.pop_back();
            slot& s = qc.slots[cid];
            s.io = io;
            if (!io.is_read && vmap)
                for (uint32_t i = 0; i < io.nlb; ++i)
                    fp::stamp_block(s.buf + size_t(i) * p.lba_size, p.lba_size, io.slba + i,
                                    vmap->next_generation(io.slba + i));
            nvme::sqe c{};
            c.opcode = io.is_read ? nvme::io_opc::read : nvme::io_opc::write;
            c.cid = cid;
            c.nsid = p.nsid;
            c.cdw10 = static_cast<uint32_t>(io.slba);
            c.cdw11 = static_cast<uint32_t>(io.slba >> 32);
            c.cdw12 = io.nlb - 1;
            s.start_ns = ferry::env::now_ns();
            qc.q->submit(c, {s.buf, p.bs});
        }
    };
    try {
        while (ferry::env::now_ns() < p.deadline_ns) {
            for (queue_ctx* qc : queues) submit_more(*qc);
            unsigned reaped = 0;
            for (queue_ctx* qc : queues) reaped += qc->q->poll([&](const fp::completion& c) { complete(*qc, c); });
            ++res.polls;
            if (reaped == 0) ++res.empty_polls;
        }
        // Drain what is in flight (not counted beyond the deadline would bias nothing: they
        // were issued inside the window).
        const uint64_t drain_until = ferry::env::now_ns() + 30'000'000'000ull;
        for (;;) {
            bool busy = false;
            for (queue_ctx* qc : queues) busy |= qc->free_cids.size() < p.qd;
            if (!busy || ferry::env::now_ns() > drain_until) break;
            for (queue_ctx* qc : queues) qc->q->poll([&](const fp::completion& c) { complete(*qc, c); });
        }
    } catch (const std::exception& e) {
        note_error(e.what());
    }
}

double cpu_seconds() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::string random_host_nqn(std::array<uint8_t, 16>& id) {
    std::random_device rd;
    for (auto& b : id) b = static_cast<uint8_t>(rd());
    id[6] = (id[6] & 0x0F) | 0x40;
    id[8] = (id[8] & 0x3F) | 0x80;
    return fmt::format("nqn.2014-08.org.nvmexpress:uuid:{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-"
                       "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                       id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7], id[8], id[9], id[10], id[11], id[12],
                       id[13], id[14], id[15]);
}

// Host ID from a UUID host NQN (as nvme-cli does), else a hash of the NQN.
std::array<uint8_t, 16> hostid_of(const std::string& nqn) {
    std::array<uint8_t, 16> id{};
    auto pos = nqn.find(":uuid:");
    if (pos != std::string::npos) {
        std::string hex;
        for (char c : nqn.substr(pos + 6))
            if (c != '-') hex += c;
        if (hex.size() == 32) {
            for (int i = 0; i < 16; ++i) id[i] = static_cast<uint8_t>(std::stoi(hex.substr(i * 2, 2), nullptr, 16));
            return id;
        }
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 16; ++i) {
        for (unsigned char c : nqn) h = (h ^ c) * 0x100000001b3ull;
        id[i] = static_cast<uint8_t>(h >> 56);
    }
    return id;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    CLI::App app{"ferry-perf: NVMe/TCP load generator and data verifier (a user-space initiator).\n"
                 "Connects an admin queue and --queues I/O queues to a subsystem and runs a workload on one\n"
                 "namespace for --time seconds; prints IOPS, bandwidth, latency percentiles and its own CPU time."};
    app.add_option("-a,--addr", o.addr, "target address")->capture_default_str();
    app.add_option("-p,--port", o.port, "target TCP port")->capture_default_str();
    app.add_option("-n,--nqn", o.nqn, "subsystem NQN")->required();
    app.add_option("--hostnqn", o.hostnqn, "host NQN (default: a random uuid NQN)");
    app.add_option("--nsid", o.nsid, "namespace ID")->capture_default_str();
    app.add_option("--rw", o.rw, "read, write (sequential), randread, randwrite, rw (random mix, see --mix)")
        ->capture_default_str();
    app.add_option("--mix", o.mix, "read percentage for --rw rw")->capture_default_str()->check(CLI::Range(0, 100));
    app.add_option("--bs", o.bs, "I/O size (4k, 128k, ...; a multiple of the LBA size, at most MDTS)")
        ->capture_default_str();
    app.add_option("--qd", o.qd, "outstanding I/Os per queue")->capture_default_str()->check(CLI::Range(1, 1023));
    app.add_option("--queues", o.queues, "I/O queues (connections)")->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("-t,--time", o.seconds, "run time in seconds")->capture_default_str()->check(CLI::Range(0.1, 86400.0));
    app.add_option("--size", o.size, "bytes of the namespace to use from --offset (default: to the end)");
    app.add_option("--offset", o.offset, "first byte of the namespace to use")->capture_default_str();
    app.add_option("--digest", o.digest, "digests to negotiate: hdr, data or hdr,data");
    app.add_option("--cpus", o.cpus, "CPUs for worker threads, one thread per CPU (queues spread over them)");
    app.add_flag("--verify", o.verify,
                 "stamp written blocks (LBA, generation, CRC32C) and check every block read; exit 1 on a mismatch");
    app.add_option("--verify-state", o.verify_state,
                   "with --verify: read the generations a run wrote from this file before starting (if it exists) "
                   "and write them back at the end, so a later run checks what an earlier one wrote")
        ->needs("--verify");
    app.add_option("--json", o.json, "write the results as JSON to this file ('-' = standard output)");
    app.add_option("--seed", o.seed, "random seed (default: time)");
    CLI11_PARSE(app, argc, argv);

    try {
        const bool hdgst = o.digest.find("hdr") != std::string::npos;
        const bool ddgst = o.digest.find("data") != std::string::npos;
        if (!o.digest.empty() && !hdgst && !ddgst) throw std::invalid_argument("--digest takes hdr, data or hdr,data");
        const fp::rw_mode mode = fp::parse_rw(o.rw);
        const uint64_t bs = fp::parse_bytes(o.bs);
        std::vector<int> cpus;
        if (!o.cpus.empty()) cpus = ferry::env::parse_cpu_list(o.cpus);
        std::array<uint8_t, 16> hostid{};
        if (o.hostnqn.empty())
            o.hostnqn = random_host_nqn(hostid);
        else
            hostid = hostid_of(o.hostnqn);

        // Admin queue: connect, enable, identify.
        fp::host_queue admin(o.addr, o.port, false, false);
        admin.handshake();
        auto c = admin.connect(o.nqn, o.hostnqn, hostid.data(), 0, 0xFFFF, 32, 30'000);
        if (c.status)
            throw std::runtime_error(fmt::format("admin Connect to {} refused: status {:#x} ({})", o.nqn, c.status,
                                                 nvme::status_name(c.status)));
        const uint16_t cntlid = static_cast<uint16_t>(c.dw0);
        const uint64_t cap = admin.property_get(nvme::reg::cap, true);
        admin.property_set(nvme::reg::cc, (6u << 16) | (4u << 20));
        admin.property_set(nvme::reg::cc, (6u << 16) | (4u << 20) | 1u);
        for (int i = 0;; ++i) {
            const uint64_t csts = admin.property_get(nvme::reg::csts, false);
            if (csts & nvme::csts::cfs) throw std::runtime_error("controller fatal status after enable");
            if (csts & nvme::csts::rdy) break;
            if (i > 1000) throw std::runtime_error("controller not ready after enable");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        std::vector<uint8_t> page(4096);
        nvme::sqe id{};
        id.opcode = nvme::admin_opc::identify;
        id.cdw10 = nvme::cns::ctrl;
        if ((c = admin.execute(id, page)).status) throw std::runtime_error("Identify Controller failed");
        nvme::identify_ctrl ic;
        std::memcpy(&ic, page.data(), sizeof(ic));
        id.nsid = o.nsid;
        id.cdw10 = nvme::cns::ns;
        if ((c = admin.execute(id, page)).status)
            throw std::runtime_error(fmt::format("Identify Namespace {}: status {:#x}", o.nsid, c.status));
        nvme::identify_ns ns;
        std::memcpy(&ns, page.data(), sizeof(ns));
        if (ns.nsze == 0) throw std::runtime_error(fmt::format("namespace {} is not active", o.nsid));
        const uint32_t lba_size = 1u << ns.lbaf[ns.flbas & 0xF].lbads;
        const uint64_t mdts = ic.mdts ? (uint64_t(4096) << ((cap >> 48) & 0xF)) << ic.mdts : ~0ull;
        if (bs == 0 || bs % lba_size) throw std::invalid_argument(fmt::format("--bs {} is not a multiple of the {}-byte LBA", bs, lba_size));
        if (bs > mdts) throw std::invalid_argument(fmt::format("--bs {} exceeds the controller's MDTS ({} bytes)", bs, mdts));
        const uint64_t ns_bytes = ns.nsze * lba_size;
        const uint64_t offset = fp::parse_bytes(o.offset);
        const uint64_t size = o.size.empty() ? ns_bytes - std::min(offset, ns_bytes) : fp::parse_bytes(o.size);
        if (offset % lba_size || size % lba_size || offset + size > ns_bytes || size < bs * o.queues)
            throw std::invalid_argument(fmt::format("--offset {} --size {} do not fit the {}-byte namespace in whole "
                                                    "LBAs with at least one I/O per queue",
                                                    offset, size, ns_bytes));
        const uint32_t in_capsule = ic.ioccsz >= 4 ? ic.ioccsz * 16 - 64 : 0;

        nvme::sqe sf{};
        sf.opcode = nvme::admin_opc::set_features;
        sf.cdw10 = nvme::fid::num_queues;
        sf.cdw11 = ((o.queues - 1) << 16) | (o.queues - 1);
        c = admin.execute(sf, {});
        if (c.status) throw std::runtime_error(fmt::format("Set Features Number of Queues: status {:#x}", c.status));
        const unsigned granted = std::min(c.dw0 & 0xFFFF, c.dw0 >> 16) + 1;
        if (granted < o.queues)
            throw std::runtime_error(fmt::format("the controller grants {} I/O queues, {} asked", granted, o.queues));

        // I/O queues.
        const uint16_t mqes = static_cast<uint16_t>(cap & 0xFFFF);
        if (o.qd > mqes)
            throw std::invalid_argument(fmt::format(
                "--qd {} exceeds the controller's MQES {} (hint: MQES is zero-based, so a queue holds {} entries and "
                "one stays free as the submission queue's full mark: use --qd {} or less)",
                o.qd, mqes, mqes + 1u, mqes));
        const uint16_t depth = static_cast<uint16_t>(std::min<unsigned>(std::max(o.qd + 1, 16u), mqes + 1u));
        std::vector<std::unique_ptr<queue_ctx>> qs;
        for (unsigned i = 0; i < o.queues; ++i) {
            auto qc = std::make_unique<queue_ctx>();
            qc->q = std::make_unique<fp::host_queue>(o.addr, o.port, hdgst, ddgst);
            qc->q->handshake();
            auto r = qc->q->connect(o.nqn, o.hostnqn, hostid.data(), static_cast<uint16_t>(i + 1), cntlid, depth, 0);
            if (r.status) throw std::runtime_error(fmt::format("I/O queue {} Connect: status {:#x}", i + 1, r.status));
            qc->q->set_in_capsule_limit(in_capsule);
            qc->q->set_max_transfer(static_cast<uint32_t>(bs));
            qc->memory.assign(size_t(o.qd) * bs + 4096, 0);
            auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(qc->memory.data()) + 4095) & ~uintptr_t(4095));
            qc->slots.resize(o.qd);
            for (unsigned s = 0; s < o.qd; ++s) {
                qc->slots[s].buf = base + size_t(s) * bs;
                qc->free_cids.push_back(static_cast<uint16_t>(o.qd - 1 - s));
            }
            qs.push_back(std::move(qc));
        }

        // Workers: each owns a slice of the range (disjoint, so --verify has one truth per block).
        const unsigned nworkers = cpus.empty() ? 1 : std::min<unsigned>(static_cast<unsigned>(cpus.size()), o.queues);
        const uint64_t first_lba = offset / lba_size, lbas = size / lba_size, nlb = bs / lba_size;
        const uint64_t slice = lbas / nworkers / nlb * nlb;
        if (slice < nlb) throw std::invalid_argument("--size too small for the workers");
        if (o.seed == 0) o.seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        run_params p{o.nsid, lba_size, static_cast<uint32_t>(nlb), static_cast<uint32_t>(bs), o.qd, 0};
        std::vector<worker_result> results(nworkers);
        // --verify-state: "ferry-perf verify-state 1 FIRST_LBA LBAS LBA_SIZE\n" then one
        // generation (uint32, host order) per LBA.
        std::vector<uint32_t> known(o.verify_state.empty() ? 0 : slice * nworkers, 0);
        const std::string state_header =
            fmt::format("ferry-perf verify-state 1 {} {} {}\n", first_lba, known.size(), lba_size);
        if (!o.verify_state.empty()) {
            std::ifstream in(o.verify_state, std::ios::binary);
            if (in) {
                std::string header;
                std::getline(in, header);
                if (header + "\n" != state_header)
                    throw std::invalid_argument(fmt::format("--verify-state {}: '{}' is not for this range ({})",
                                                            o.verify_state, header,
                                                            state_header.substr(0, state_header.size() - 1)));
                in.read(reinterpret_cast<char*>(known.data()), static_cast<std::streamsize>(known.size() * 4));
                if (!in) throw std::invalid_argument("--verify-state " + o.verify_state + ": truncated");
            }
        }
        std::vector<std::optional<fp::verify_map>> vms(nworkers);
        std::vector<std::thread> threads;
        const double cpu0 = cpu_seconds();
        const uint64_t t0 = ferry::env::now_ns();
        p.deadline_ns = t0 + static_cast<uint64_t>(o.seconds * 1e9);
        for (unsigned w = 0; w < nworkers; ++w) {
            std::vector<queue_ctx*> mine;
            for (unsigned i = w; i < o.queues; i += nworkers) mine.push_back(qs[i].get());
            const uint64_t start = first_lba + w * slice;
            fp::generator gen(mode, o.mix, start, slice, static_cast<uint32_t>(nlb), o.seed + w);
            std::optional<fp::verify_map>& vm = vms[w];
            if (o.verify) vm.emplace(start, slice);
            for (uint64_t i = 0; vm && i < known.size() / nworkers; ++i) vm->written(start + i, known[w * slice + i]);
            threads.emplace_back(run_worker, mine, gen, std::ref(vm), std::cref(p), cpus.empty() ? -1 : cpus[w],
                                 std::ref(results[w]));
        }
        // Keep the association alive while the workers run. A failed keep-alive (the target went
        // away) is reported after the workers are joined: thrown past joinable threads, it would
        // abort the program instead of printing the error.
        uint64_t next_ka = t0 + 2'000'000'000ull;
        std::exception_ptr admin_error;
        while (!admin_error && ferry::env::now_ns() < p.deadline_ns) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            if (ferry::env::now_ns() >= next_ka) {
                nvme::sqe ka{};
                ka.opcode = nvme::admin_opc::keep_alive;
                try {
                    admin.execute(ka, {});
                } catch (const std::exception&) {
                    admin_error = std::current_exception();
                }
                next_ka += 2'000'000'000ull;
            }
        }
        for (auto& t : threads) t.join();
        if (admin_error) std::rethrow_exception(admin_error);
        if (!o.verify_state.empty()) {
            for (unsigned w = 0; w < nworkers; ++w)
                for (uint64_t i = 0; i < slice; ++i) known[w * slice + i] = vms[w]->expected(first_lba + w * slice + i);
            std::ofstream out(o.verify_state, std::ios::binary | std::ios::trunc);
            out << state_header;
            out.write(reinterpret_cast<const char*>(known.data()), static_cast<std::streamsize>(known.size() * 4));
            if (!out) throw std::runtime_error("--verify-state " + o.verify_state + ": cannot write");
        }
        const double elapsed = double(ferry::env::now_ns() - t0) / 1e9;
        const double cpu = cpu_seconds() - cpu0;

        worker_result total;
        for (auto& r : results) {
            total.lat.merge(r.lat);
            total.reads += r.reads;
            total.writes += r.writes;
            total.bytes += r.bytes;
            total.errors += r.errors;
            total.verified_blocks += r.verified_blocks;
            total.verify_failures += r.verify_failures;
            total.polls += r.polls;
            total.empty_polls += r.empty_polls;
            if (total.first_error.empty()) total.first_error = r.first_error;
        }
        // Orderly shutdown: I/O queues first (closing their sockets), then CC.SHN.
        qs.clear();
        try {
            admin.property_set(nvme::reg::cc, (6u << 16) | (4u << 20) | 1u | (1u << 14));
        } catch (const std::exception&) {
        }

        const double ios = double(total.reads + total.writes);
        const double iops = ios / elapsed, mib_s = double(total.bytes) / elapsed / (1 << 20);
        auto us = [](double ns) { return ns / 1000.0; };
        nlohmann::json j = {
            {"workload",
             {{"rw", fp::rw_name(mode)}, {"bs", bs}, {"qd", o.qd}, {"queues", o.queues}, {"time_s", o.seconds},
              {"hdgst", hdgst}, {"ddgst", ddgst}, {"verify", o.verify}, {"nqn", o.nqn}, {"nsid", o.nsid}}},
            {"elapsed_s", elapsed},
            {"ios", total.reads + total.writes},
            {"reads", total.reads},
            {"writes", total.writes},
            {"iops", iops},
            {"mib_s", mib_s},
            {"lat_avg_us", us(total.lat.mean())},
            {"lat_p50_us", us(double(total.lat.percentile(0.50)))},
            {"lat_p99_us", us(double(total.lat.percentile(0.99)))},
            {"lat_p999_us", us(double(total.lat.percentile(0.999)))},
            {"lat_max_us", us(double(total.lat.max()))},
            {"cpu_s", cpu},
            {"cpu_util", cpu / elapsed},
            // Share of the workers' loop passes that found no completion: high means ferry-perf
            // was waiting on the target, not the other way round.
            {"idle_poll_ratio", total.polls ? double(total.empty_polls) / double(total.polls) : 0.0},
            {"errors", total.errors},
            {"verified_blocks", total.verified_blocks},
            {"verify_failures", total.verify_failures},
        };
        if (!o.json.empty()) {
            if (o.json == "-") {
                std::cout << j.dump(2) << "\n";
            } else {
                std::ofstream(o.json) << j.dump(2) << "\n";
            }
        }
        if (o.json != "-") {
            std::printf("ferry-perf: %s %s x qd %u x %u queue(s)%s%s, %.1f s, %s nsid %u (%u-byte LBAs)\n",
                        fp::rw_name(mode), o.bs.c_str(), o.qd, o.queues, hdgst ? ", hdgst" : "", ddgst ? ", ddgst" : "",
                        elapsed, o.nqn.c_str(), o.nsid, lba_size);
            std::printf("%12s %10s %9s %9s %9s %9s %9s %8s %9s\n", "IOPS", "MiB/s", "avg us", "p50 us", "p99 us",
                        "p99.9 us", "max us", "CPU", "idle poll");
            std::printf("%12.0f %10.1f %9.1f %9.1f %9.1f %9.1f %9.1f %7.0f%% %8.0f%%\n", iops, mib_s,
                        us(total.lat.mean()), us(double(total.lat.percentile(0.5))),
                        us(double(total.lat.percentile(0.99))), us(double(total.lat.percentile(0.999))),
                        us(double(total.lat.max())), 100 * cpu / elapsed,
                        total.polls ? 100.0 * double(total.empty_polls) / double(total.polls) : 0.0);
            if (o.verify)
                std::printf("verify: %llu blocks read and checked, %llu failures\n",
                            static_cast<unsigned long long>(total.verified_blocks),
                            static_cast<unsigned long long>(total.verify_failures));
        }
        if (total.errors) std::fprintf(stderr, "ferry-perf: %llu I/O errors; first: %s\n",
                                       static_cast<unsigned long long>(total.errors), total.first_error.c_str());
        if (total.errors || total.verify_failures) return 1;
        if (ios == 0) {
            std::fprintf(stderr, "ferry-perf: no I/O completed\n");
            return 1;
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ferry-perf: %s\n", e.what());
        return 2;
    }
}
