// Poll-mode reactor threads. Each reactor owns its connections, its buffer pool and
// everything reached from them; other threads talk to it only through post().
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "env/dma_pool.hh"

struct io_uring;
#include "transport/connection.hh"

namespace ferry::transport {

class provided_buffers;  // reactor.cc

enum class socket_engine { posix, uring };

struct reactor_options {
    int cpu = -1;                    // pin to this CPU; -1 = no pinning
    socket_engine engine = socket_engine::posix;  // recv/sendmsg per connection, or io_uring
    size_t pool_bytes = 64u << 20;   // DMA buffer pool of this reactor
    unsigned idle_spin_us = 200;     // busy-poll this long after the last work before blocking
    // Extra pool bytes (beyond each queue entry's reserved chunk) one connection's transfers may
    // hold at once; 0 = a quarter of the pool. Never less than one maximal transfer (8 MiB).
    size_t connection_buffer_bytes = 0;
    // A write whose R2T data has not all arrived within this closes its connection.
    uint64_t r2t_timeout_ns = default_r2t_timeout_ns;
};

class reactor {
public:
    reactor(unsigned id, reactor_options opts);
    ~reactor();
    reactor(const reactor&) = delete;
    reactor& operator=(const reactor&) = delete;

    void start();
    void stop();  // asks the loop to end, closes every connection, joins

    // Runs `fn` on the reactor thread (thread-safe; wakes a blocked reactor). What is posted
    // before the loop ends runs, during stop() at the latest; what is posted later is destroyed
    // unrun with the reactor.
    void post(std::function<void()> fn);
    // Makes a blocked reactor run a pass (thread-safe, no lock, no allocation): a backend
    // completion published on another thread (env::thread_wake_hook() on the reactor thread).
    void poke();
    // Hands an accepted socket to this reactor (thread-safe). A stopping reactor closes it
    // unserved and releases its admission ticket, also when it never ran the message.
    void adopt(int fd, connection_info info, handler_factory& factory);

    unsigned id() const { return _id; }
    env::dma_pool& pool() { return *_pool; }
    buffer_arbiter& buffers() { return *_buffers; }
    size_t connection_count() const { return _conn_count.load(std::memory_order_relaxed); }
    // For the management API (any thread): time spent in loop passes that found work (busy
    // share = its growth / wall time), when the loop started, and pool chunks held by
    // connections (published by the reactor after each pass).
    uint64_t busy_ns() const { return _busy_ns.load(std::memory_order_relaxed); }
    uint64_t started_ns() const { return _started_ns.load(std::memory_order_relaxed); }
    size_t pool_chunks_in_use() const { return _chunks_in_use.load(std::memory_order_relaxed); }
    size_t pool_chunks_total() const { return _pool->total_chunks(); }

private:
    void run();
    void add_connection(int fd, connection_info info, handler_factory& factory);
    bool poll_once(bool may_block);
    bool poll_posix(bool may_block);
    bool start_uring();  // on the reactor thread; false: it uses the posix engine
    void stop_uring();
    bool poll_uring(bool may_block);
    uint64_t prepare_to_block();
    void arm_wake_read();
    void write_wake();  // makes a blocked epoll_wait / io_uring wait return
    void drain_messages();
    void reap();
    void watch(connection& c, bool want_write);

    unsigned _id;
    reactor_options _opts;
    std::unique_ptr<env::dma_pool> _pool;
    std::unique_ptr<buffer_arbiter> _buffers;
    int _epoll = -1;
    int _wake = -1;  // eventfd
    std::thread _thread;
    std::atomic<bool> _running{false};
    std::atomic<size_t> _conn_count{0};
    // Written by the reactor thread only, once per pass that found work.
    alignas(64) std::atomic<uint64_t> _busy_ns{0};
    std::atomic<size_t> _chunks_in_use{0};
    std::atomic<uint64_t> _started_ns{0};

    std::mutex _msg_lock;  // control path only: posting messages between threads
    std::vector<std::function<void()>> _messages;
    std::atomic<bool> _has_messages{false};  // lets the busy loop skip the lock
    std::atomic<bool> _blocked{false};
    std::atomic<bool> _poked{false};  // seq_cst with _blocked, like _has_messages

    struct slot {
        std::unique_ptr<connection> conn;
        bool write_watched = false;
    };
    std::vector<slot> _conns;
    uint64_t _next_timer_ns = 0;
    // socket_engine::uring only: the ring (made on the reactor thread: single issuer) and the
    // receive buffers provided to it.
    std::unique_ptr<::io_uring> _ring;
    std::unique_ptr<provided_buffers> _rx_buffers;
    uint64_t _wake_value = 0;
    bool _wake_armed = false;
};

}  // namespace ferry::transport
