#include "target/ns_reaper.hh"

#include <spdlog/spdlog.h>

#include <chrono>

#include "env/thread.hh"

namespace ferry::target {

ns_reaper::~ns_reaper() {
    {
        std::lock_guard g(_lock);
        _stop = true;
    }
    _wake.notify_one();
    if (_thread.joinable()) _thread.join();
}

void ns_reaper::hold(std::shared_ptr<ns> n) {
    {
        std::lock_guard g(_lock);
        _held.push_back(std::move(n));
        if (!_thread.joinable()) _thread = std::thread([this] { run(); });
    }
    _wake.notify_one();  // it sleeps without a timeout while it holds nothing
}

void ns_reaper::sweep() {
    std::unique_lock g(_lock);
    auto last = take_unheld();
    g.unlock();
    close(std::move(last));
}

size_t ns_reaper::held() const {
    std::lock_guard g(_lock);
    return _held.size();
}

// Only this list holds them then: nothing can take a new reference any more (they are out of
// every namespace table), so the count cannot rise again.
std::vector<std::shared_ptr<ns>> ns_reaper::take_unheld() {
    std::vector<std::shared_ptr<ns>> last;
    for (size_t i = 0; i < _held.size();) {
        if (_held[i].use_count() == 1) {
            last.push_back(std::move(_held[i]));
            _held[i] = std::move(_held.back());
            _held.pop_back();
            continue;
        }
        ++i;
    }
    return last;
}

void ns_reaper::close(std::vector<std::shared_ptr<ns>> last) {
    for (auto& n : last) {
        const std::string what = n->store->describe();
        const uint32_t nsid = n->nsid;
        n.reset();
        spdlog::info("namespace {}: no queue holds it any more: store {} closed", nsid, what);
    }
}

void ns_reaper::run() {
    env::name_current_thread("ferry-ns-reaper");
    std::unique_lock g(_lock);
    while (!_stop) {
        // A queue drops its reference without telling anyone: poll while something is held.
        if (_held.empty())
            _wake.wait(g);
        else
            _wake.wait_for(g, std::chrono::milliseconds(100));
        auto last = take_unheld();
        if (last.empty()) continue;
        g.unlock();  // closing may take seconds: hold() must not wait for it
        close(std::move(last));
        g.lock();
    }
}

}  // namespace ferry::target
