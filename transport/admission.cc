#include "transport/admission.hh"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "env/thread.hh"

namespace ferry::transport {

admission::admission(admission_limits limits) : _limits(limits) {}

std::shared_ptr<admission::ticket> admission::admit(const std::string& address, int fd, uint64_t conn_id,
                                                    const std::string& listener, refusal* why) {
    std::lock_guard g(_lock);
    // Shed connections are on their way out (their reactor closes them on its next pass): they
    // do not hold a slot, but at most pending_total of them may linger on top of the limit.
    if (_open - _shedding >= _limits.max_connections || _open >= _limits.max_connections + _limits.pending_total) {
        ++_refused_total;
        if (why) *why = refusal::full;
        return nullptr;
    }
    // One listener (say, a public NIC) cannot take every slot from the others.
    if (_limits.max_per_listener && !listener.empty()) {
        auto it = _open_by_listener.find(listener);
        if (it != _open_by_listener.end() && it->second >= _limits.max_per_listener) {
            ++_refused_total;
            if (why) *why = refusal::listener_full;
            return nullptr;
        }
    }
    auto& same = _pending_by_address[address];
    if (!same.empty() && same.size() >= _limits.pending_per_address) shed(*same.front());
    if (!_pending_all.empty() && _pending_all.size() >= _limits.pending_total) shed(*_pending_all.front());
    auto t = std::make_shared<ticket>();
    t->_owner = shared_from_this();
    t->_address = address;
    t->_listener = listener;
    if (!listener.empty()) ++_open_by_listener[listener];
    t->_fd = fd;
    t->_conn_id = conn_id;
    auto& list = _pending_by_address[address];  // shed() may have erased the entry
    t->_in_address = list.insert(list.end(), t.get());
    t->_in_all = _pending_all.insert(_pending_all.end(), t.get());
    ++_open;
    if (const uint64_t shed = _shed_log.take_due(env::now_ns()))
        spdlog::warn(
            "admission: shed {} connection(s) that had not completed ICReq, TLS, Connect and authentication since "
            "the last report (caps: {} per address, {} overall; {} open, {} pending; latest newcomer conn {} from {})",
            shed, _limits.pending_per_address, _limits.pending_total, _open, _pending_all.size(), conn_id, address);
    return t;
}

void admission::unlink_pending(ticket& t) {
    if (!t._pending) return;
    t._pending = false;
    _pending_all.erase(t._in_all);
    auto it = _pending_by_address.find(t._address);
    it->second.erase(t._in_address);
    if (it->second.empty()) _pending_by_address.erase(it);
}

void admission::shed(ticket& t) {
    unlink_pending(t);
    t._shed.store(true, std::memory_order_relaxed);
    ++_shedding;
    // The socket is open until the ticket is released (the reactor releases before closing).
    ::shutdown(t._fd, SHUT_RDWR);
    spdlog::debug("admission: conn {} from {} shed (not connected)", t._conn_id, t._address);
    ++_shed_total;
    _shed_log.add();
}

void admission::ticket::connected() {
    std::lock_guard g(_owner->_lock);
    if (!_released) _owner->unlink_pending(*this);
}

void admission::ticket::release() {
    if (!_owner) return;
    std::lock_guard g(_owner->_lock);
    if (_released) return;
    _released = true;
    _owner->unlink_pending(*this);
    --_owner->_open;
    if (!_listener.empty()) {
        auto it = _owner->_open_by_listener.find(_listener);
        if (it != _owner->_open_by_listener.end() && --it->second == 0) _owner->_open_by_listener.erase(it);
    }
    if (shed()) --_owner->_shedding;
}

bool admission::shed_still_closing_at_cap() const {
    std::lock_guard g(_lock);
    return _open - _shedding < _limits.max_connections && _open >= _limits.max_connections + _limits.pending_total;
}

size_t admission::shedding() const {
    std::lock_guard g(_lock);
    return _shedding;
}

size_t admission::open() const {
    std::lock_guard g(_lock);
    return _open;
}

size_t admission::pending() const {
    std::lock_guard g(_lock);
    return _pending_all.size();
}

uint64_t admission::shed_total() const {
    std::lock_guard g(_lock);
    return _shed_total;
}

uint64_t admission::refused_total() const {
    std::lock_guard g(_lock);
    return _refused_total;
}

}  // namespace ferry::transport
