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
    return *this;
}

namespace {
io_totals snapshot(const ns_io_counters& c, uint64_t now_ns) {
    constexpr auto r = std::memory_order_relaxed;
    io_totals t;
    t.read_commands = c.read_commands.load(r);
    t.write_commands = c.write_commands.load(r);
    t.read_units = c.read_units.load(r);
    t.write_units = c.write_units.load(r);
    t.media_errors = c.media_errors.load(r);
    t.busy_ns = c.busy_ns.load(r);
    const uint64_t since = c.busy_since_ns.load(r);
    if (since && now_ns > since) t.busy_ns += now_ns - since;  // a busy period still running
    return t;
}
}  // namespace

std::shared_ptr<ns_io_counters> ns_stats::attach() {
    auto c = std::make_shared<ns_io_counters>();
    c->stats = this;
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
