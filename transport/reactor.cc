#include "transport/reactor.hh"

#include <liburing.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <spdlog/spdlog.h>

#include "env/thread.hh"

namespace ferry::transport {

// Receive buffers provided to the kernel through a registered buffer ring (io_uring): each
// multishot receive completion fills one and names it; the reactor gives it back as soon as
// the connection has taken the bytes (same pass), so the kernel never waits for a slow
// consumer and an idle connection holds none. Fixed size: count x size per reactor (8 MiB).
// liburing 2.3 (Debian 12) has no io_uring_setup_buf_ring(): the ring memory is mapped here.
class provided_buffers {
public:
    static constexpr uint16_t group = 0;
    static constexpr unsigned count = 256;      // a power of two (ring mask)
    static constexpr unsigned size = 32 << 10;  // like the posix engine's per-connection receive buffer

    explicit provided_buffers(::io_uring* ring) : _ring(ring) {
        _ring_bytes = (count * sizeof(::io_uring_buf) + 4095) & ~size_t(4095);
        void* r = ::mmap(nullptr, _ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r == MAP_FAILED) throw std::runtime_error(std::string("cannot map its buffer ring: ") + std::strerror(errno));
        _br = static_cast<::io_uring_buf_ring*>(r);
        void* d = ::mmap(nullptr, size_t(count) * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (d == MAP_FAILED) {
            const std::string err = std::strerror(errno);
            ::munmap(_br, _ring_bytes);
            throw std::runtime_error("cannot map its receive buffers: " + err);
        }
        _data = static_cast<uint8_t*>(d);
        ::io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<uint64_t>(_br);
        reg.ring_entries = count;
        reg.bgid = group;
        ::io_uring_buf_ring_init(_br);
        const int rc = ::io_uring_register_buf_ring(_ring, &reg, 0);
        if (rc < 0) {
            ::munmap(_data, size_t(count) * size);
            ::munmap(_br, _ring_bytes);
            throw std::runtime_error(std::string("cannot register its buffer ring: ") + std::strerror(-rc));
        }
        for (unsigned bid = 0; bid < count; ++bid) give_back(bid);
        publish();
    }
    ~provided_buffers() {
        ::io_uring_unregister_buf_ring(_ring, group);
        ::munmap(_data, size_t(count) * size);
        ::munmap(_br, _ring_bytes);
    }
    provided_buffers(const provided_buffers&) = delete;
    provided_buffers& operator=(const provided_buffers&) = delete;

    uint8_t* at(unsigned bid) const { return _data + size_t(bid) * size; }
    // Queued, then made visible to the kernel in one store by publish() (once per pass).
    void give_back(unsigned bid) {
        ::io_uring_buf_ring_add(_br, at(bid), size, static_cast<unsigned short>(bid),
                                ::io_uring_buf_ring_mask(count), _pending++);
    }
    void publish() {
        if (!_pending) return;
        ::io_uring_buf_ring_advance(_br, _pending);
        _pending = 0;
    }

private:
    ::io_uring* _ring;
    ::io_uring_buf_ring* _br = nullptr;
    size_t _ring_bytes = 0;
    uint8_t* _data = nullptr;
    int _pending = 0;
};

namespace {
constexpr uint64_t timer_period_ns = 100'000'000;  // keep-alive and handshake checks
constexpr int max_events = 64;
// Up to this many connections a busy reactor polls their sockets directly (one recv each)
// instead of asking epoll first: one syscall less per pass on the latency path.
constexpr size_t direct_poll_limit = 8;
}  // namespace

reactor::reactor(unsigned id, reactor_options opts) : _id(id), _opts(opts) {
    _pool = std::make_unique<env::dma_pool>(opts.pool_bytes);
    _buffers = std::make_unique<buffer_arbiter>(
        *_pool, (opts.connection_buffer_bytes + env::dma_pool::chunk_size - 1) / env::dma_pool::chunk_size,
        opts.r2t_timeout_ns);
    if (opts.engine == socket_engine::uring) {
        // The ring itself is made by the reactor thread (run()): a single-issuer ring belongs
        // to the thread that makes it. Here only whether this kernel lets us have one at all.
        ::io_uring probe;
        int rc = ::io_uring_queue_init(8, &probe, 0);
        if (rc < 0) throw std::runtime_error(std::string("reactor: io_uring_queue_init: ") + std::strerror(-rc));
        ::io_uring_queue_exit(&probe);
    }
    auto fail = [&](const char* what) {
        const std::string err = std::strerror(errno);
        if (_epoll >= 0) ::close(_epoll);
        if (_wake >= 0) ::close(_wake);
        throw std::runtime_error("reactor " + std::to_string(id) + ": " + what + ": " + err);
    };
    _epoll = ::epoll_create1(EPOLL_CLOEXEC);
    if (_epoll < 0) fail("cannot create its epoll instance");
    _wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (_wake < 0) fail("cannot create its wake-up eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // nullptr = the wake-up eventfd
    if (::epoll_ctl(_epoll, EPOLL_CTL_ADD, _wake, &ev) != 0) fail("cannot register its wake-up eventfd with epoll");
}

reactor::~reactor() {
    stop();
    if (_epoll >= 0) ::close(_epoll);
    if (_wake >= 0) ::close(_wake);
}

void reactor::start() {
    _running = true;
    _thread = std::thread([this] { run(); });
}

void reactor::stop() {
    if (!_thread.joinable()) return;
    _running = false;
    write_wake();
    _thread.join();
}

void reactor::post(std::function<void()> fn) {
    {
        std::lock_guard g(_msg_lock);
        _messages.push_back(std::move(fn));
        _has_messages.store(true);  // seq_cst with _blocked: see prepare_to_block()
    }
    if (_blocked.load()) write_wake();
}

void reactor::poke() {
    // Stored only when no poke is pending: rbd calls this on every completion, and the store
    // would dirty the line holding _blocked and _has_messages, which the reactor reads every
    // pass. A pending poke suffices: the first prepare_to_block() after this load takes it and
    // does not block, and the pass after it sees what the caller published before (seq_cst).
    if (!_poked.load()) _poked.store(true);  // seen by prepare_to_block() if it runs after this
    if (_blocked.load()) write_wake();
}

void reactor::write_wake() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(_wake, &one, sizeof(one));
}

namespace {
// An accepted socket on its way to a reactor: if the message carrying it is never run (the
// reactor stopped first), its admission slot is given back and the socket closed, in that
// order (admission may shut the socket down until its ticket is released).
struct adoption {
    int fd;
    connection_info info;
    adoption(int f, connection_info i) : fd(f), info(std::move(i)) {}
    adoption(const adoption&) = delete;
    adoption& operator=(const adoption&) = delete;
    ~adoption() {
        if (fd < 0) return;
        if (info.ticket) info.ticket->release();
        ::close(fd);
    }
};
}  // namespace

void reactor::adopt(int fd, connection_info info, handler_factory& factory) {
    // shared_ptr: std::function copies its callable, and the socket must have one owner.
    auto a = std::make_shared<adoption>(fd, std::move(info));
    post([this, a, &factory] {
        const int adopted_fd = std::exchange(a->fd, -1);
        add_connection(adopted_fd, std::move(a->info), factory);
    });
}

void reactor::add_connection(int fd, connection_info info, handler_factory& factory) {
    if (!_running.load(std::memory_order_relaxed)) {
        // Posted before the loop ended and run by its final drain: ferryd is stopping.
        spdlog::debug("reactor {}: conn {} from {}: closed unserved, the reactor is stopping", _id, info.id, info.peer);
        if (info.ticket) info.ticket->release();
        ::close(fd);
        return;
    }
    info.reactor = _id;
    std::unique_ptr<connection> c;
    try {
        c = std::make_unique<connection>(fd, info, *_buffers, factory, env::pass_now_ns());
    } catch (const std::exception& e) {
        spdlog::warn("reactor {}: refusing connection {} from {}: {}", _id, info.id, info.peer, e.what());
        if (info.ticket) info.ticket->release();
        ::close(fd);
        return;
    }
    if (!_ring) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = c.get();
        if (::epoll_ctl(_epoll, EPOLL_CTL_ADD, fd, &ev) != 0) {
            // Never polled: close it now (the destructor releases its admission slot and socket).
            const std::string err = std::strerror(errno);
            spdlog::warn("reactor {}: conn {} from {}: cannot register its socket with epoll: {}", _id, info.id,
                         info.peer, err);
            c->close("cannot register the socket with epoll: " + err);
            return;
        }
    }
    spdlog::debug("reactor {}: conn {} from {} to {}:{}", _id, info.id, info.peer, info.local_addr, info.local_port);
    _conns.push_back({std::move(c), false});
    _conn_count.store(_conns.size(), std::memory_order_relaxed);
}

void reactor::watch(connection& c, bool want_write) {
    epoll_event ev{};
    ev.events = want_write ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
    ev.data.ptr = &c;
    if (::epoll_ctl(_epoll, EPOLL_CTL_MOD, c.fd(), &ev) != 0) {
        const std::string err = std::strerror(errno);
        spdlog::warn("reactor {}: conn {} ({}): cannot change its socket's epoll events: {}", _id, c.info().id,
                     c.info().peer, err);
        c.close("cannot change the socket's epoll events: " + err);
    }
}

void reactor::drain_messages() {
    if (!_has_messages.load(std::memory_order_acquire)) return;
    std::vector<std::function<void()>> msgs;
    {
        std::lock_guard g(_msg_lock);
        msgs.swap(_messages);
        _has_messages.store(false, std::memory_order_relaxed);
    }
    for (auto& m : msgs) m();
}

namespace {
constexpr uint64_t op_recv = 0, op_send = 1, wake_tag = 2;
uint64_t tag(connection* c, uint64_t op) { return reinterpret_cast<uint64_t>(c) | op; }
// A free submission entry; a full ring is submitted first (the ring holds 1024 entries and
// each connection queues at most two per pass). Null if that submit could not free one.
::io_uring_sqe* next_sqe(::io_uring* ring) {
    ::io_uring_sqe* sqe = ::io_uring_get_sqe(ring);
    if (!sqe) {
        ::io_uring_submit(ring);
        sqe = ::io_uring_get_sqe(ring);
    }
    return sqe;
}
}  // namespace

// Marks the reactor blocked and returns how long it may wait: until the next timer tick, or
// 0 when a message was posted before the flag was set (it did not write the eventfd). Both
// flags are seq_cst so that a poster and the reactor cannot both miss each other's store.
uint64_t reactor::prepare_to_block() {
    _blocked.store(true);
    const uint64_t now = env::now_ns();
    if (_has_messages.load() || _poked.exchange(false) || now >= _next_timer_ns) return 0;
    return _next_timer_ns - now;
}

void reactor::arm_wake_read() {
    if (_wake_armed) return;
    ::io_uring_sqe* sqe = ::io_uring_get_sqe(_ring.get());
    if (!sqe) return;
    ::io_uring_prep_read(sqe, _wake, &_wake_value, sizeof(_wake_value), 0);
    ::io_uring_sqe_set_data64(sqe, wake_tag);
    _wake_armed = true;
}

// Makes the reactor's ring on its own thread, with the features that let one system call per
// pass do all the socket work: single issuer + deferred task work (receives run when the
// reactor enters the ring, not as interrupts of whatever it is doing), submit-all, and a
// provided buffer ring for multishot receives. Falls back to fewer setup flags on an older
// kernel; false (the reactor then uses the posix engine) when even that fails.
bool reactor::start_uring() {
    // Both need Linux 6.0 (single issuer), as multishot receive does: a ring made here can
    // take the receives below (5.19 would make the ring and fail every receive).
    const unsigned tries[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
                              IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN};
    auto ring = std::make_unique<::io_uring>();
    int rc = -EINVAL;
    unsigned flags = 0;
    for (unsigned f : tries) {
        ::io_uring_params p{};
        p.flags = f;
        // A pass's completions: one per provided buffer, one send and one ended receive per
        // connection. More than this waits in the kernel's overflow list (no CQE is dropped).
        p.cq_entries = 4096;
        p.flags |= IORING_SETUP_CQSIZE;
        rc = ::io_uring_queue_init_params(1024, ring.get(), &p);
        if (rc == 0) {
            flags = f;
            break;
        }
    }
    if (rc < 0) {
        spdlog::error("reactor {}: cannot make its io_uring ({}; the uring engine needs Linux 6.0): using the posix "
                      "socket engine",
                      _id, std::strerror(-rc));
        return false;
    }
    try {
        _rx_buffers = std::make_unique<provided_buffers>(ring.get());
    } catch (const std::exception& e) {
        spdlog::error("reactor {}: io_uring: {}: using the posix socket engine", _id, e.what());
        ::io_uring_queue_exit(ring.get());
        return false;
    }
    ::io_uring_register_ring_fd(ring.get());  // saves a file lookup per enter; optional
    _ring = std::move(ring);
    spdlog::debug("reactor {}: io_uring setup flags {:#x}, {} x {} KiB provided receive buffers", _id, flags,
                  provided_buffers::count, provided_buffers::size >> 10);
    return true;
}

void reactor::stop_uring() {
    if (!_ring) return;
    _rx_buffers.reset();  // unregistered by the thread that owns the ring
    ::io_uring_queue_exit(_ring.get());
    _ring.reset();
}

// One pass of the io_uring engine: arm a multishot receive on every connection without one,
// queue a send for every connection with data waiting and no send in flight, then one
// system call submits them, runs the receives the kernel deferred to this thread (filling
// provided buffers) and, when idle, waits. Then the completions: received bytes go to their
// connection and their buffer straight back to the kernel.
bool reactor::poll_uring(bool may_block) {
    bool work = false;
    ::io_uring* ring = _ring.get();
    arm_wake_read();
    for (auto& s : _conns) {
        connection& c = *s.conn;
        msghdr* msg;
        if (c.arm_recv()) {
            ::io_uring_sqe* sqe = next_sqe(ring);
            if (!sqe) {  // the ring would not take more now (its submit failed): next pass
                c.on_recv_ended(-EAGAIN);
                continue;
            }
            ::io_uring_prep_recv_multishot(sqe, c.fd(), nullptr, 0, 0);
            sqe->flags |= IOSQE_BUFFER_SELECT;
            sqe->buf_group = provided_buffers::group;
            ::io_uring_sqe_set_data64(sqe, tag(&c, op_recv));
        }
        if (c.wants_write() && c.prepare_send(msg)) {
            ::io_uring_sqe* sqe = next_sqe(ring);
            if (!sqe) {
                c.on_send_done(-EAGAIN);  // nothing was sent; the data stays queued
                continue;
            }
            ::io_uring_prep_sendmsg(sqe, c.fd(), msg, MSG_NOSIGNAL);
            ::io_uring_sqe_set_data64(sqe, tag(&c, op_send));
        }
    }
    const uint64_t wait_ns = may_block ? prepare_to_block() : 0;
    if (wait_ns) {
        __kernel_timespec ts{static_cast<long long>(wait_ns / 1'000'000'000),
                             static_cast<long long>(wait_ns % 1'000'000'000)};
        ::io_uring_cqe* cqe = nullptr;
        ::io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr);
        env::set_pass_clock(env::now_ns());  // it may have slept: what it received arrived now
    } else {
        ::io_uring_submit_and_get_events(ring);  // enters even with nothing to submit: deferred receives
    }
    _blocked.store(false, std::memory_order_relaxed);
    unsigned head, seen = 0;
    ::io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring, head, cqe) {
        ++seen;
        const uint64_t data = ::io_uring_cqe_get_data64(cqe);
        if (data == wake_tag) {
            _wake_armed = false;
            continue;
        }
        auto* c = reinterpret_cast<connection*>(data & ~uint64_t(3));
        if ((data & 3) == op_send) {
            work |= c->on_send_done(cqe->res);
            continue;
        }
        if (cqe->flags & IORING_CQE_F_BUFFER) {
            const unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            if (cqe->res > 0) work |= c->on_received(_rx_buffers->at(bid), static_cast<size_t>(cqe->res));
            _rx_buffers->give_back(bid);
        }
        if (!(cqe->flags & IORING_CQE_F_MORE)) work |= c->on_recv_ended(cqe->res);
    }
    _rx_buffers->publish();
    ::io_uring_cq_advance(ring, seen);
    return work || seen > 0;
}

bool reactor::poll_posix(bool may_block) {
    bool work = false;
    int n = 0;
    epoll_event events[max_events];
    if (!may_block && _conns.size() <= direct_poll_limit) {
        for (auto& s : _conns) work |= s.conn->on_readable();
    } else {
        const uint64_t wait_ns = may_block ? prepare_to_block() : 0;
        n = ::epoll_wait(_epoll, events, max_events, wait_ns ? static_cast<int>(wait_ns / 1'000'000) + 1 : 0);
        _blocked.store(false, std::memory_order_relaxed);
        if (wait_ns) env::set_pass_clock(env::now_ns());  // it may have slept: what it received arrived now
    }
    for (int i = 0; i < n; ++i) {
        auto* c = static_cast<connection*>(events[i].data.ptr);
        if (!c) {
            uint64_t v;
            [[maybe_unused]] auto r = ::read(_wake, &v, sizeof(v));
            continue;
        }
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) work |= c->on_readable();
    }
    return work || n > 0;
}

bool reactor::poll_once(bool may_block) {
    bool work = _ring ? poll_uring(may_block) : poll_posix(may_block);
    drain_messages();
    work |= _buffers->serve();  // before the flushes below: R2Ts it sends go out this pass
    for (auto& s : _conns) {
        connection& c = *s.conn;
        if (c.closing()) continue;
        work |= c.handler()->poll() > 0;
        // Backend commands in flight complete without a socket event: those only poll() sees
        // (SSD queue pairs, io_uring files) count as work, so the reactor does not sleep while
        // they are out. A store completing on its own threads (rbd) pokes the reactor instead:
        // it may sleep once --idle-spin-us passed, leaving the CPU to those threads.
        work |= c.handler()->wants_polling();
        if (_ring) continue;  // io_uring sends are queued by poll_uring
        if (c.wants_write()) work |= c.flush();
        const bool want = c.wants_write();
        if (want != s.write_watched) {
            watch(c, want);
            s.write_watched = want;
        }
    }
    const uint64_t now = env::pass_now_ns();
    if (now >= _next_timer_ns) {
        _next_timer_ns = now + timer_period_ns;
        for (auto& s : _conns) s.conn->on_timer(now);
    }
    reap();
    return work;
}

void reactor::reap() {
    for (size_t i = 0; i < _conns.size();) {
        connection& c = *_conns[i].conn;
        if (c.closing()) c.handler()->poll();
        if (c.reapable()) {
            spdlog::debug("reactor {}: conn {} released", _id, c.info().id);
            _conns[i] = std::move(_conns.back());
            _conns.pop_back();
            _conn_count.store(_conns.size(), std::memory_order_relaxed);
            continue;
        }
        ++i;
    }
}

void reactor::run() {
    env::name_current_thread("ferry-r" + std::to_string(_id));
    env::set_thread_wake_hook({[](void* r) { static_cast<reactor*>(r)->poke(); }, this});
    if (_opts.cpu >= 0) {
        std::string err = env::pin_current_thread(_opts.cpu);
        if (!err.empty()) spdlog::warn("reactor {}: cannot pin to CPU {}: {}", _id, _opts.cpu, err);
    }
    if (_opts.engine == socket_engine::uring) start_uring();  // after pinning: the ring's memory near its CPU
    spdlog::info("reactor {} running{}: {} sockets, a {} MiB buffer pool ({})", _id,
                 _opts.cpu >= 0 ? " on CPU " + std::to_string(_opts.cpu) : std::string(),
                 _ring ? fmt::format("io_uring (multishot receive, {} MiB of provided receive buffers)",
                                     (size_t(provided_buffers::count) * provided_buffers::size) >> 20)
                       : std::string("posix"),
                 _pool->bytes() >> 20,
                 _pool->hugepages() ? "hugepages" : "regular pages: no hugepages reserved");
    const uint64_t spin_ns = uint64_t(_opts.idle_spin_us) * 1000;
    uint64_t last_work = env::now_ns();
    _started_ns.store(last_work, std::memory_order_relaxed);
    // One clock read per pass: it is the pass clock (env::set_pass_clock) for everything the
    // pass timestamps, and it ends the previous pass. A pass that found work adds its duration,
    // from its start (after any sleep: poll_uring/poll_posix re-read the clock when they wake)
    // to the next pass's start, to the busy time.
    uint64_t worked_since = 0;  // the start of the last pass if it found work
    auto account = [&](uint64_t now) {
        if (!worked_since) return;
        _busy_ns.store(_busy_ns.load(std::memory_order_relaxed) + (now - worked_since), std::memory_order_relaxed);
        last_work = now;
    };
    while (_running.load(std::memory_order_relaxed)) {
        const uint64_t now = env::now_ns();
        env::set_pass_clock(now);
        account(now);
        const bool may_block = now - last_work > spin_ns;
        worked_since = poll_once(may_block) ? env::pass_now_ns() : 0;
        // Every pass (a closing connection may give its chunks back in one that found no work).
        _chunks_in_use.store(_pool->total_chunks() - _pool->free_chunks(), std::memory_order_relaxed);
    }
    account(env::now_ns());
    env::set_pass_clock(0);  // the drain below reads the clock itself
    // Messages posted before the loop ended still run (a caller may wait for one); a socket
    // handed over in the last moment is closed unserved (add_connection). Messages posted after
    // this are destroyed with the reactor, unrun (an adopted socket is closed then).
    drain_messages();
    for (auto& s : _conns) s.conn->close("ferryd shutting down");
    // Socket operations (io_uring) and backend commands (file I/O into pool buffers) still in
    // flight reference the connections: let them finish first (bounded: 10 s).
    const uint64_t give_up = env::now_ns() + 10'000'000'000ull;
    for (;;) {
        bool busy = false;
        for (auto& s : _conns) {
            s.conn->handler()->poll();
            busy |= !s.conn->reapable();
        }
        if (!busy || env::now_ns() > give_up) break;
        if (_ring) poll_uring(false);
    }
    _conns.clear();
    _conn_count.store(0);
    stop_uring();
}

}  // namespace ferry::transport
