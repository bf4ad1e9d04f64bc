// Namespaces the control path let go of while I/O queues still held them. Closing a store
// may block for seconds (rbd: rbd_close waits for librbd's requests, rados_shutdown joins its
// threads), so its last reference must not be dropped by a reactor's queue: held here, each is
// dropped on the reaper's own thread once nothing else holds it.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "target/subsystem.hh"

namespace ferry::target {

class ns_reaper {
public:
    ns_reaper() = default;
    ns_reaper(const ns_reaper&) = delete;
    ns_reaper& operator=(const ns_reaper&) = delete;
    // Stops the thread and drops what is left (ferryd: after the reactors are gone).
    ~ns_reaper();
    // Keeps `n` until it is the last reference (checked every 100 ms while anything is held;
    // idle, the thread sleeps until the next hold()). Thread-safe; starts the thread on first use.
    void hold(std::shared_ptr<ns> n);
    // Drops, on the calling thread, those nothing else holds now.
    void sweep();
    // How many are held (tests).
    size_t held() const;

private:
    void run();
    std::vector<std::shared_ptr<ns>> take_unheld();  // under _lock
    static void close(std::vector<std::shared_ptr<ns>> last);

    mutable std::mutex _lock;
    std::condition_variable _wake;
    std::vector<std::shared_ptr<ns>> _held;
    bool _stop = false;
    std::thread _thread;
};

}  // namespace ferry::target
