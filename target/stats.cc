#include "target/stats.hh"

#include <algorithm>
#include <cstring>

#include "nvme/spec.hh"

namespace ferry::target {

io_totals& io_totals::operator+=(const io_totals& o) {
    read_commands += o.read_commands;
    write_commands += o.write_commands;
    read_units += o.read_units;
    write_units += o.write_units;
    media_errors += o.media_errors;
    busy_ns += o.busy_ns;
    reads += o.reads;
    writes += o.writes;
    others += o.others;
    bytes_read += o.bytes_read;
    bytes_written += o.bytes_written;
    latency_sum_ns += o.latency_sum_ns;
    for (unsigned i = 0; i < latency_buckets; ++i) latency[i] += o.latency[i];
    for (unsigned i = 0; i < error_kinds; ++i) errors[i] += o.errors[i];
    return *this;
}

uint64_t io_totals::error_count() const {
    uint64_t n = 0;
    for (uint64_t e : errors) n += e;
    return n;
}

error_kind classify_error(uint16_t status) {
    status &= uint16_t(~nvme::status_dnr);
    switch (status) {
        case nvme::sc::invalid_opcode:
            return error_kind::invalid_opcode;
        case nvme::sc::invalid_field:
            return error_kind::invalid_field;
        case nvme::sc::invalid_namespace:
            return error_kind::invalid_namespace;
        case nvme::sc::lba_out_of_range:
            return error_kind::lba_out_of_range;
        case nvme::sc::sgl_invalid_data_length:
            return error_kind::data_length;
        case nvme::sc::internal_error:
        case nvme::sc::data_transfer_error:
            return error_kind::internal;
        case nvme::sc::aborted_by_request:
        case nvme::sc::aborted_sq_deletion:
            return error_kind::aborted;
        default:
            break;
    }
    switch ((status >> 8) & 7) {
        case 0:
            return error_kind::other_generic;
        case 1:
            return error_kind::command_specific;
        case 2:
            return error_kind::media;
        case 3:
            return error_kind::path;
        default:
            return error_kind::other;
    }
}

const char* error_kind_name(error_kind k) {
    static constexpr const char* names[error_kinds] = {
        "invalid_opcode", "invalid_field", "invalid_namespace", "lba_out_of_range", "data_length",
        "internal",       "aborted",       "other_generic",     "command_specific", "media",
        "path",           "other"};
    return names[unsigned(k)];
}

void ns_io_counters::completed(uint8_t opcode, uint32_t data_len, uint16_t status, uint64_t arrival_ns,
                               uint64_t now_ns) {
    const bool ok = (status & ~nvme::status_dnr) == nvme::sc::success;
    switch (opcode) {
        case nvme::io_opc::read:
            add(read_commands, 1);
            if (ok) add(bytes_read, data_len);
            break;
        case nvme::io_opc::write:
            add(write_commands, 1);
            if (ok) add(bytes_written, data_len);
            break;
        case nvme::io_opc::compare:
            add(compare_commands, 1);
            add(other_commands, 1);
            break;
        default:
            add(other_commands, 1);
    }
    if (!ok && (opcode == nvme::io_opc::read || opcode == nvme::io_opc::write) &&
        ((status >> 8) & 7) == static_cast<uint8_t>(nvme::sct::media))
        add(media_errors, 1);
    const uint64_t took = now_ns > arrival_ns ? now_ns - arrival_ns : 0;
    add(latency[latency_bucket(took)], 1);
    add(latency_sum_ns, took);
    if (--outstanding == 0) {
        const uint64_t since = busy_since_ns.load(std::memory_order_relaxed);
        busy_since_ns.store(0, std::memory_order_relaxed);
        add(busy_ns, now_ns > since ? now_ns - since : 0);
    }
}

namespace {
io_totals snapshot(const ns_io_counters& c, uint64_t now_ns) {
    constexpr auto r = std::memory_order_relaxed;
    io_totals t;
    t.reads = c.read_commands.load(r);
    t.writes = c.write_commands.load(r);
    t.others = c.other_commands.load(r);
    t.bytes_read = c.bytes_read.load(r);
    t.bytes_written = c.bytes_written.load(r);
    t.read_commands = t.reads + c.compare_commands.load(r);
    t.write_commands = t.writes;
    t.read_units = t.bytes_read / 512;
    t.write_units = t.bytes_written / 512;
    t.media_errors = c.media_errors.load(r);
    t.busy_ns = c.busy_ns.load(r);
    const uint64_t since = c.busy_since_ns.load(r);
    if (since && now_ns > since) t.busy_ns += now_ns - since;  // a busy period still running
    t.latency_sum_ns = c.latency_sum_ns.load(r);
    for (unsigned i = 0; i < latency_buckets; ++i) t.latency[i] = c.latency[i].load(r);
    for (unsigned i = 0; i < error_kinds; ++i) t.errors[i] = c.errors[i].load(r);
    return t;
}
}  // namespace

std::shared_ptr<ns_io_counters> ns_stats::attach(counter_labels labels) {
    auto c = std::make_shared<ns_io_counters>();
    c->stats = this;
    c->labels = std::move(labels);
    std::lock_guard g(_lock);
    _live.push_back(c);
    return c;
}

void ns_stats::detach(const std::shared_ptr<ns_io_counters>& c) {
    std::lock_guard g(_lock);
    auto it = std::find(_live.begin(), _live.end(), c);
    if (it == _live.end()) return;
    _closed += snapshot(*c, 0);
    _live.erase(it);
}

io_totals ns_stats::read(uint64_t now_ns) const {
    std::lock_guard g(_lock);
    io_totals t = _closed;
    for (const auto& c : _live) t += snapshot(*c, now_ns);
    return t;
}

io_totals ns_stats::read(uint64_t now_ns, std::vector<queue_snapshot>& live) const {
    std::lock_guard g(_lock);
    io_totals t = _closed;
    for (const auto& c : _live) {
        live.push_back({c->labels, snapshot(*c, now_ns)});
        t += live.back().io;
    }
    return t;
}

void error_log::record(uint16_t sqid, uint16_t cid, uint16_t status, uint16_t param_loc, uint64_t lba, uint32_t nsid) {
    std::lock_guard g(_lock);
    ++_count;
    _ring[_count % capacity] = {_count, sqid, cid, status, param_loc, lba, nsid};
}

uint64_t error_log::count() const {
    std::lock_guard g(_lock);
    return _count;
}

std::vector<uint8_t> error_log::page() const {
    std::vector<uint8_t> p(capacity * 64);
    std::lock_guard g(_lock);
    const uint64_t n = std::min<uint64_t>(_count, capacity);
    for (uint64_t i = 0; i < n; ++i) {
        const entry& e = _ring[(_count - i) % capacity];
        uint8_t* at = p.data() + i * 64;
        const uint16_t sf = nvme::cqe_status(e.status);  // status field as in the CQE (phase bit 0)
        std::memcpy(at + 0, &e.count, 8);
        std::memcpy(at + 8, &e.sqid, 2);
        std::memcpy(at + 10, &e.cid, 2);
        std::memcpy(at + 12, &sf, 2);
        std::memcpy(at + 14, &e.param_loc, 2);
        std::memcpy(at + 16, &e.lba, 8);
        std::memcpy(at + 24, &e.nsid, 4);
        at[29] = nvme::trtype_tcp;  // transport type
    }
    return p;
}

}  // namespace ferry::target
