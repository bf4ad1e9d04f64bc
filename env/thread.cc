#include "env/thread.hh"

#include <pthread.h>
#include <sched.h>

#include <cstring>
#include <stdexcept>

namespace ferry::env {
namespace {
int parse_cpu(std::string_view s, std::string_view whole) {
    if (s.empty() || s.size() > 4) throw std::invalid_argument("bad CPU list '" + std::string(whole) + "'");
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') throw std::invalid_argument("bad CPU number '" + std::string(s) + "' in '" + std::string(whole) + "'");
        v = v * 10 + (c - '0');
    }
    if (v >= CPU_SETSIZE) throw std::invalid_argument("CPU " + std::string(s) + " out of range");
    return v;
}
}  // namespace

std::vector<int> parse_cpu_list(std::string_view list) {
    std::vector<int> cpus;
    size_t pos = 0;
    while (pos <= list.size()) {
        size_t comma = list.find(',', pos);
        std::string_view part = list.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        size_t dash = part.find('-');
        if (dash == std::string_view::npos) {
            cpus.push_back(parse_cpu(part, list));
        } else {
            int lo = parse_cpu(part.substr(0, dash), list), hi = parse_cpu(part.substr(dash + 1), list);
            if (hi < lo) throw std::invalid_argument("bad CPU range '" + std::string(part) + "'");
            for (int c = lo; c <= hi; ++c) cpus.push_back(c);
        }
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    for (size_t i = 0; i < cpus.size(); ++i)
        for (size_t j = i + 1; j < cpus.size(); ++j)
            if (cpus[i] == cpus[j]) throw std::invalid_argument("CPU " + std::to_string(cpus[i]) + " listed twice");
    return cpus;
}

std::string pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    return rc == 0 ? std::string() : std::string(std::strerror(rc));
}

namespace detail {
thread_local uint64_t pass_clock_ns = 0;
}

namespace {
thread_local wake_hook this_thread_wake_hook;
}
void set_thread_wake_hook(wake_hook hook) {
    this_thread_wake_hook = hook;
}
wake_hook thread_wake_hook() {
    return this_thread_wake_hook;
}

void name_current_thread(const std::string& name) { pthread_setname_np(pthread_self(), name.substr(0, 15).c_str()); }

}  // namespace ferry::env
