// bench/rtt_floor: the machine's small-message TCP round-trip floor on loopback (a
// sockperf-style ping-pong). A server thread pinned to one CPU echoes 64-byte messages sent
// by a client pinned to another; both busy-poll non-blocking sockets like ferryd and
// ferry-perf do. Prints the average and p99 round trip in microseconds as JSON.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "env/thread.hh"

namespace {
void full_send(int fd, const char* p, size_t n) {
    while (n) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= static_cast<size_t>(w);
        }
    }
}
bool full_recv(int fd, char* p, size_t n) {
    while (n) {
        ssize_t r = ::recv(fd, p, n, MSG_DONTWAIT);
        if (r == 0) return false;
        if (r > 0) {
            p += r;
            n -= static_cast<size_t>(r);
        }
    }
    return true;
}
}  // namespace

int main(int argc, char** argv) {
    const int server_cpu = argc > 1 ? std::atoi(argv[1]) : 0;
    const int client_cpu = argc > 2 ? std::atoi(argv[2]) : 1;
    const int seconds = argc > 3 ? std::atoi(argv[3]) : 5;
    int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t al = sizeof(a);
    ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &al);
    ::listen(lfd, 1);
    std::thread server([&] {
        ferry::env::pin_current_thread(server_cpu);
        int fd = ::accept(lfd, nullptr, nullptr);
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char buf[64];
        while (full_recv(fd, buf, sizeof(buf))) full_send(fd, buf, sizeof(buf));
        ::close(fd);
    });
    ferry::env::pin_current_thread(client_cpu);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char buf[64] = {};
    std::vector<double> rtt;
    rtt.reserve(1 << 22);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
        auto t = std::chrono::steady_clock::now();
        full_send(fd, buf, sizeof(buf));
        full_recv(fd, buf, sizeof(buf));
        rtt.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t).count());
    }
    ::close(fd);
    server.join();
    double sum = 0;
    for (double v : rtt) sum += v;
    std::sort(rtt.begin(), rtt.end());
    std::printf("{\"rtt_avg_us\": %.2f, \"rtt_p50_us\": %.2f, \"rtt_p99_us\": %.2f, \"round_trips\": %zu}\n",
                sum / double(rtt.size()), rtt[rtt.size() / 2], rtt[rtt.size() * 99 / 100], rtt.size());
    return 0;
}
