// The request table and data buffers: request slots, the reactor's buffer_arbiter (who gets
// pool chunks beyond a request's reserved one, in which order), chunk and iovec-table
// accounting per connection, and the R2T data timeout.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "transport/connection_inline.hh"

namespace ferry::transport {

void request_list::push_back(request& r) {
    r.wait_next = nullptr;
    r.wait_prev = _tail;
    if (_tail)
        _tail->wait_next = &r;
    else
        _head = &r;
    _tail = &r;
    ++_size;
}

void request_list::remove(request& r) {
    if (r.wait_prev)
        r.wait_prev->wait_next = r.wait_next;
    else
        _head = r.wait_next;
    if (r.wait_next)
        r.wait_next->wait_prev = r.wait_prev;
    else
        _tail = r.wait_prev;
    r.wait_prev = r.wait_next = nullptr;
    --_size;
}

buffer_arbiter::buffer_arbiter(env::dma_pool& pool, size_t connection_chunks, uint64_t r2t_timeout_ns)
    : _pool(pool),
      _connection_chunks(connection_chunks ? std::max<size_t>(connection_chunks, max_chunks)
                                           : default_connection_chunks(pool)),
      _r2t_timeout_ns(r2t_timeout_ns) {
    const size_t blocks = 2 * ((pool.total_chunks() + inline_chunks - 1) / inline_chunks);
    _table_slab.resize(blocks * inline_chunks);
    _table_used.assign(blocks, 0);
    _table_free = blocks;
}

iovec* buffer_arbiter::take_table(unsigned chunks) {
    const size_t want = (chunks + inline_chunks - 1) / inline_chunks;
    if (want > _table_free) return nullptr;
    // First fit over the block map (a few hundred bytes; only transfers over 128 KiB come here).
    size_t run = 0;
    for (size_t b = 0; b < _table_used.size(); ++b) {
        run = _table_used[b] ? 0 : run + 1;
        if (run == want) {
            const size_t first = b + 1 - want;
            std::fill_n(_table_used.begin() + static_cast<ptrdiff_t>(first), want, uint8_t{1});
            _table_free -= want;
            return _table_slab.data() + first * inline_chunks;
        }
    }
    return nullptr;
}

void buffer_arbiter::give_table(iovec* table, unsigned chunks) {
    const size_t want = (chunks + inline_chunks - 1) / inline_chunks;
    const size_t first = static_cast<size_t>(table - _table_slab.data()) / inline_chunks;
    std::fill_n(_table_used.begin() + static_cast<ptrdiff_t>(first), want, uint8_t{0});
    _table_free += want;
}

size_t buffer_arbiter::default_connection_chunks(const env::dma_pool& pool) {
    return std::max<size_t>(max_chunks, pool.total_chunks() / 4);
}

bool buffer_arbiter::serve() {
    bool started = false;
    while (request* r = _fifo.front()) {
        connection& c = *r->conn;
        if (c.over_cap(*r)) {  // its connection took chunks meanwhile: wait there, not here
            _fifo.remove(*r);
            r->waiting_in = wait_line::connection_cap;
            c._parked.push_back(*r);
            continue;
        }
        if (!c.take_chunks(*r)) {
            // Queue entries reserved since it came may have left too few chunks for it ever.
            if (c.refuse_unservable(*r)) continue;
            break;  // strictly in order: nobody behind the oldest passes it
        }
        _fifo.remove(*r);
        r->waiting_in = wait_line::none;
        c.start_data(*r);
        started = true;
    }
    return started;
}

void connection::add_requests(unsigned count) {
    for (unsigned i = 0; i < count; ++i) {
        auto r = std::make_unique<request>();
        if (!_pool.get(1, &r->reserved_chunk))
            throw std::runtime_error("buffer pool exhausted (" + std::to_string(_pool.total_chunks()) + " chunks)");
        ++_buffers._reserved;
        r->tag = static_cast<uint16_t>(_requests.size());
        r->conn = this;
        _free_tags.push_back(r->tag);
        _requests.push_back(std::move(r));
    }
}

void connection::release(request& req) {
    forget_cid(req);
    if (req.chunk_count) {
        _extra_chunks -= req.chunk_count;
        put_chunks(req);
        if (!_parked.empty() && !_closing) unpark();
    }
    req.chunk_count = 0;
    req.iov_count = 0;
    req.state = request_state::free;
    _free_tags.push_back(req.tag);
}

// A Read of zeroes takes no chunks and a transfer that fits the reserved chunk starts now. A
// larger one takes extra chunks, unless its connection is at its cap (it parks on the
// connection) or older requests already wait in the reactor's FIFO or the pool is short (it
// joins the FIFO): nobody passes a waiter.
void connection::request_buffer(request& req) {
    if (req.zero_data) {  // a Read of zeroes (check() said so): no chunks to take or wait for
        start_data(req);
        return;
    }
    if (req.data_len <= env::dma_pool::chunk_size) {
        req.iov[0] = {req.reserved_chunk.iov_base, req.data_len};
        req.iov_count = 1;
        req.chunk_count = 0;
        start_data(req);
        return;
    }
    if (refuse_unservable(req)) return;
    req.state = request_state::wait_buffer;
    if (!_parked.empty() || over_cap(req)) {
        req.waiting_in = wait_line::connection_cap;
        _parked.push_back(req);
        ++_buffers._waits;
        return;
    }
    if (!_buffers._fifo.empty() || !take_chunks(req)) {
        req.waiting_in = wait_line::reactor_fifo;
        _buffers._fifo.push_back(req);
        ++_buffers._waits;
        return;
    }
    start_data(req);
}

// A transfer larger than the chunks of the pool that no queue entry reserves can never get
// them while those queues exist (reserved chunks return only when a connection closes):
// waiting would hold the reactor's FIFO, and every transfer of every connection behind it,
// for as long. It is answered at once: Internal Error, without DNR if closing connections
// could make room, with DNR if even the whole pool is too small.
bool connection::refuse_unservable(request& req) {
    const size_t n = (req.data_len + env::dma_pool::chunk_size - 1) / env::dma_pool::chunk_size;
    if (n <= _buffers.unreserved_chunks()) return false;
    if (req.waiting_in == wait_line::reactor_fifo) _buffers._fifo.remove(req);
    req.waiting_in = wait_line::none;
    const bool never = n > _pool.total_chunks();
    // The host retries (no DNR): one warning a second at most, with the count; each at debug.
    spdlog::debug(
        "conn {} ({}, qid {}): cid {} opcode {:#04x}: a {} KiB transfer needs {} buffer chunks, {} of the "
        "reactor's {} are not reserved by queue entries: Internal Error{}",
        _info.id, _info.peer, _qid, +req.cmd.cid, +req.cmd.opcode, req.data_len >> 10, n, _buffers.unreserved_chunks(),
        _pool.total_chunks(), never ? ", DNR" : "");
    _buffers._unservable.add();
    if (const uint64_t count = _buffers._unservable.take_due(env::now_ns()))
        spdlog::warn(
            "conn {} ({}): {} transfer(s) refused with Internal Error since the last report: larger than "
            "the {} of the reactor's {} buffer chunks that queue entries do not reserve (raise --pool-mib)",
            _info.id, _info.peer, count, _buffers.unreserved_chunks(), _pool.total_chunks());
    req.status = nvme::sc::internal_error | (never ? nvme::status_dnr : 0);
    req.result0 = req.result1 = 0;
    complete(req);
    return true;
}

bool connection::over_cap(const request& req) const {
    const size_t n = (req.data_len + env::dma_pool::chunk_size - 1) / env::dma_pool::chunk_size;
    return _extra_chunks + n > _buffers._connection_chunks;
}

bool connection::take_chunks(request& req) {
    const uint32_t len = req.data_len;
    const unsigned n = (len + env::dma_pool::chunk_size - 1) / env::dma_pool::chunk_size;
    iovec* table = req.inline_iov.data();
    if (n > inline_chunks && !(table = _buffers.take_table(n))) return false;
    if (!_pool.get(n, table)) {
        if (table != req.inline_iov.data()) _buffers.give_table(table, n);
        return false;
    }
    req.iov = table;
    _buffers._chunks_granted += n;
    _extra_chunks += n;
    req.chunk_count = static_cast<uint16_t>(n);
    req.iov_count = static_cast<uint16_t>(n);
    req.iov[n - 1].iov_len = len - (n - 1) * env::dma_pool::chunk_size;
    return true;
}

// Returns a request's extra chunks and its iovec table, if it took one.
void connection::put_chunks(request& req) {
    _pool.put(req.iov, req.chunk_count);
    if (req.iov != req.inline_iov.data()) _buffers.give_table(req.iov, req.chunk_count);
    req.iov = req.inline_iov.data();
}

// Chunks came back: parked requests that fit under the cap again join the reactor's FIFO.
void connection::unpark() {
    while (request* r = _parked.front()) {
        if (over_cap(*r)) break;
        _parked.remove(*r);
        r->waiting_in = wait_line::reactor_fifo;
        _buffers._fifo.push_back(*r);
    }
}

// On close: requests waiting for chunks leave their line, and requests waiting for R2T data
// give their chunks back now (the host will not send the data any more).
void connection::drop_waiting_and_r2t() {
    for (auto& rp : _requests) {
        request& r = *rp;
        if (r.state == request_state::wait_buffer) {
            if (r.waiting_in == wait_line::connection_cap)
                _parked.remove(r);
            else if (r.waiting_in == wait_line::reactor_fifo)
                _buffers._fifo.remove(r);
            r.waiting_in = wait_line::none;
            release(r);
        } else if (r.state == request_state::wait_h2c) {
            release(r);
        }
    }
    _rx_req = nullptr;
}

void connection::check_r2t_timeout(uint64_t now_ns) {
    const uint64_t limit = _buffers._r2t_timeout_ns;
    for (auto& rp : _requests) {
        const request& r = *rp;
        if (r.state != request_state::wait_h2c || now_ns <= r.r2t_sent_ns + limit) continue;
        spdlog::warn(
            "conn {} ({}, qid {}): cid {}: R2T data timeout: {} of {} bytes arrived in {} ms (limit {} ms); "
            "closing",
            _info.id, _info.peer, _qid, +r.cmd.cid, r.h2c_received, r.data_len, (now_ns - r.r2t_sent_ns) / 1'000'000,
            limit / 1'000'000);
        close(fmt::format("R2T data timeout on cid {}", +r.cmd.cid));
        return;
    }
}

}  // namespace ferry::transport
