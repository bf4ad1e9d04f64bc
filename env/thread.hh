// Threads and CPU placement.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::env {

// Parses a CPU list such as "0", "0,2" or "0-3,6". Throws std::invalid_argument naming the
// offending part.
std::vector<int> parse_cpu_list(std::string_view list);

// Pins the calling thread to `cpu`; returns an error text, empty on success.
std::string pin_current_thread(int cpu);

// Names the calling thread (visible in top/perf), truncated to 15 characters.
void name_current_thread(const std::string& name);

// Wakes the poll-mode loop that runs on a thread if it is blocked (each reactor sets one for its
// own thread). A store whose completions arrive on threads of its own takes the hook of the
// thread that creates its queue and calls it after publishing a completion: thread-safe, no
// lock, no allocation. Empty on other threads.
struct wake_hook {
    void (*wake)(void* arg) = nullptr;
    void* arg = nullptr;
    void operator()() const {
        if (wake) wake(arg);
    }
};
void set_thread_wake_hook(wake_hook hook);
wake_hook thread_wake_hook();

inline uint64_t now_ns() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
}

// The pass clock: a poll-mode loop reads the clock once when it starts a pass (and again when
// it wakes from sleeping) and publishes it here for its thread, so the per-command timestamps
// taken during the pass (arrival, R2T sent, SSD submission) cost no clock read: at a million
// commands a second each read (22 ns through the vDSO on this machine type) is 2% of a core.
// Such a timestamp is at most one pass early. 0 (the default, and on every other thread) means
// "no loop here": pass_now_ns() then reads the clock.
namespace detail {
extern thread_local uint64_t pass_clock_ns;
}
inline void set_pass_clock(uint64_t ns) {
    detail::pass_clock_ns = ns;
}
inline uint64_t pass_now_ns() {
    const uint64_t ns = detail::pass_clock_ns;
    return ns ? ns : now_ns();
}

}  // namespace ferry::env
