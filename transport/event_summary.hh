// Counts events that a flood can repeat thousands of times a second (shed or refused
// connections, failed accepts) and says when to log them: one line per interval, with the
// count since the last line, instead of one line per event. Not thread-safe: its owner's lock
// or thread guards it.
#pragma once

#include <cstdint>

namespace ferry::transport {

class event_summary {
public:
    static constexpr uint64_t interval_ns = 1'000'000'000;

    void add() { ++_pending; }
    // Events to report now (counted since the last report, then reset), or 0 while there are
    // none or the last report is younger than interval_ns.
    uint64_t take_due(uint64_t now_ns) {
        if (_pending == 0 || now_ns - _last_report_ns < interval_ns) return 0;
        const uint64_t n = _pending;
        _pending = 0;
        _last_report_ns = now_ns;
        return n;
    }

private:
    uint64_t _pending = 0;
    uint64_t _last_report_ns = 0;
};

}  // namespace ferry::transport
