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

}  // namespace ferry::env
