// Admission of accepted connections: the --max-connections count and the caps on connections
// that have not finished ICReq, TLS, Connect and DH-HMAC-CHAP ("pending"), per source address
// and overall. At a pending cap the OLDEST pending connection (of that address, or overall) is shed so that a
// newcomer gets in: a flood of idle connections from one address cannot lock others out.
// Thread-safe: the acceptor admits, the reactors report Connect and release; the lock is taken
// only then, never per command. A shed connection's socket is shut down at once (its
// reactor sees EOF) and the reactor checks ticket::shed() on its timer.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "transport/event_summary.hh"

namespace ferry::transport {

struct admission_limits {
    size_t max_connections = 1024;    // open connections, all reactors together
    size_t pending_per_address = 32;  // not yet connected, per source address
    size_t pending_total = 256;       // not yet connected, all addresses
    size_t max_per_listener = 0;      // open connections through one listener; 0 = no cap of its own
};

class admission : public std::enable_shared_from_this<admission> {
public:
    class ticket;

    explicit admission(admission_limits limits);
    enum class refusal : uint8_t { none, full, listener_full };
    // Admits the accepted socket `fd` from `address` (without port) through `listener`
    // ("addr:port"); nullptr when max_connections are open, or max_per_listener through that
    // listener (`why` says which). The ticket must be released (or destroyed) before `fd` is
    // closed.
    std::shared_ptr<ticket> admit(const std::string& address, int fd, uint64_t conn_id,
                                  const std::string& listener = {}, refusal* why = nullptr);
    // Shed connections still open do not count against max_connections (they are closing), but
    // at most pending_total of them on top of it: open() <= max_connections + pending_total.

    // True while shed connections that are still closing (their reactor has not yet released
    // them) fill the pending_total allowed on top of max_connections, although fewer than
    // max_connections others are open: admit() would refuse a newcomer ferryd has room for. The
    // acceptor then leaves newcomers in the listen backlog for a moment instead (a reactor
    // behind a flood of shed connections catches up within milliseconds).
    bool shed_still_closing_at_cap() const;
    size_t open() const;
    size_t pending() const;
    size_t shedding() const;  // shed, not yet released
    uint64_t shed_total() const;
    uint64_t refused_total() const;
    const admission_limits& limits() const { return _limits; }

    class ticket {
    public:
        ~ticket() { release(); }
        // True once the connection was shed to make room: close it.
        bool shed() const { return _shed.load(std::memory_order_relaxed); }
        // ICReq + Connect (+ authentication, when required) done: no longer pending.
        void connected();
        // The connection is gone (call before closing its socket); idempotent.
        void release();

    private:
        friend class admission;
        std::shared_ptr<admission> _owner;
        std::string _address;
        std::string _listener;
        int _fd = -1;
        uint64_t _conn_id = 0;
        bool _pending = true;
        bool _released = false;
        std::atomic<bool> _shed{false};
        std::list<ticket*>::iterator _in_address, _in_all;
    };

private:
    void unlink_pending(ticket& t);  // with _lock held
    void shed(ticket& t);            // with _lock held: marks it, shuts its socket down

    const admission_limits _limits;
    mutable std::mutex _lock;
    size_t _open = 0;                 // admitted and not yet released
    size_t _shedding = 0;             // of which shed, not yet released
    std::list<ticket*> _pending_all;  // oldest first
    std::unordered_map<std::string, std::list<ticket*>> _pending_by_address;
    std::unordered_map<std::string, size_t> _open_by_listener;  // admitted, not yet released
    uint64_t _shed_total = 0;
    uint64_t _refused_total = 0;
    event_summary _shed_log;  // reported from admit(), the next time a connection comes
};

}  // namespace ferry::transport
