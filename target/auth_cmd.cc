// Authentication Send/Receive (fabrics 05h/06h) and the queue's DH-HMAC-CHAP state: the
// exchange itself is target/auth.cc. A host with a DH-HMAC-CHAP key gets AUTHREQ.ATR in the
// result of each Connect (admin and I/O queues), and that queue refuses every command but
// fabrics ones with Authentication Required until it authenticated (as Linux nvmet does).
#include <spdlog/spdlog.h>

#include "env/thread.hh"
#include "target/auth.hh"
#include "target/queue.hh"
#include "target/target.hh"

namespace ferry::target {
namespace {
// Time for a queue to finish an exchange after its Connect (or a host's new AUTH_Negotiate).
constexpr uint64_t auth_time_limit_ns = 10'000'000'000;
constexpr uint32_t max_auth_message = 8192;  // the largest: a Reply with an ffdhe8192 value, ~1.2 KiB

std::string address_of(const std::string& peer) {
    auto colon = peer.rfind(':');
    return colon == std::string::npos ? peer : peer.substr(0, colon);
}

// The checks Authentication Send and Receive share: SECP, SPSP0, SPSP1 (bytes 41-43), and
// TL/AL (bytes 44-47) against the command's data. 0 when the command is well formed.
uint16_t check_fields(const transport::request& req) {
    const auto& f = reinterpret_cast<const nvme::fabrics_sqe&>(req.cmd);
    const uint32_t len = uint32_t(f.specific[4]) | uint32_t(f.specific[5]) << 8 | uint32_t(f.specific[6]) << 16 |
                         uint32_t(f.specific[7]) << 24;
    if (f.specific[3] != auth::secp_dhchap || f.specific[1] != 1 || f.specific[2] != 1 || len == 0)
        return nvme::sc::invalid_field | nvme::status_dnr;
    if (len != req.data_len || len > max_auth_message) return nvme::sc::sgl_invalid_data_length | nvme::status_dnr;
    return 0;
}
}  // namespace

bool queue::auth_wanted(const subsystem& sub, const std::string& hostnqn) const {
    return !sub.is_discovery() && !hostnqn.empty() && !sub.keys_of(hostnqn).dhchap_key.empty();
}

auth::session_params queue::auth_params(const host_keys& keys) const {
    auth::session_params p;
    p.hostnqn = _ctrl->hostnqn;
    p.subnqn = _subsys->nqn();
    p.dhgroups = _tgt.dhchap_dhgroups();
    try {
        if (!keys.dhchap_key.empty()) p.host_key = parse_dhchap_secret(keys.dhchap_key);
        if (!keys.dhchap_ctrl_key.empty()) p.ctrl_key = parse_dhchap_secret(keys.dhchap_ctrl_key);
    } catch (const std::invalid_argument& e) {
        // Validated when set; should it happen, the host cannot authenticate (never let in).
        spdlog::error("conn {} ({}): {} qid {}: DH-HMAC-CHAP key unusable: {}", _conn.info().id, _conn.info().peer,
                      _ctrl->name(), _qid, e.what());
    }
    return p;
}

uint32_t queue::start_auth() {
    const host_keys keys = _subsys->keys_of(_ctrl->hostnqn);  // once: it copies every key
    if (_subsys->is_discovery() || keys.dhchap_key.empty()) {
        // Its key was removed since exec_connect marked the connection pending: not any more.
        _conn.set_auth_pending(false);
        return 0;
    }
    _auth = std::make_unique<auth::session>(auth_params(keys));
    _auth_deadline_ns = env::now_ns() + auth_time_limit_ns;
    return auth::connect_authreq_atr;
}

void queue::exec_auth_send(transport::request& req) {
    if (uint16_t status = check_fields(req)) return finish(req, status);
    if (!_auth) {
        // No key for this host: it is never challenged, and cannot start an exchange either.
        return finish(req, nvme::sc::command_sequence_error | nvme::status_dnr);
    }
    std::vector<uint8_t> msg(req.data_len);
    req.copy_out(msg.data(), msg.size());
    // A new exchange (re-authentication too) uses the host's keys as they are now.
    if (auth::session::starts_exchange(msg)) _auth->set_params(auth_params(_subsys->keys_of(_ctrl->hostnqn)));
    const bool was_in_progress = _auth->in_progress();
    _auth->on_send(msg);
    if (_auth->in_progress() && !was_in_progress) _auth_deadline_ns = env::now_ns() + auth_time_limit_ns;
    finish(req, nvme::sc::success);
    auth_settled();
}

void queue::exec_auth_recv(transport::request& req) {
    if (uint16_t status = check_fields(req)) return finish(req, status);
    if (!_auth) return finish(req, nvme::sc::command_sequence_error | nvme::status_dnr);
    if (_auth_held) return finish(req, nvme::sc::command_sequence_error | nvme::status_dnr);
    // An address that failed before this answer waits for it (on_timer completes it).
    const uint64_t now = env::now_ns();
    const uint64_t delay = _tgt.auth_backoff().delay_ns(address_of(_conn.info().peer), now);
    auto answer = _auth->on_receive(req.data_len);
    auth_settled();
    if (!answer) return finish(req, nvme::sc::invalid_field | nvme::status_dnr);
    if (delay) {
        _auth_held = &req;
        _auth_answer = std::move(*answer);
        _auth_release_ns = now + delay;
        return;
    }
    reply_data(req, answer->data(), answer->size());
    finish(req, nvme::sc::success);
}

void queue::auth_settled() {
    const auto o = _auth->take_outcome();
    if (o == auth::session::outcome::none) return;
    const auto& info = _conn.info();
    const std::string address = address_of(info.peer);
    // Who, where and how; never a key, challenge or response.
    if (o == auth::session::outcome::succeeded) {
        _tgt.auth_backoff().succeeded(address);
        _conn.set_auth_pending(false);
        spdlog::info("conn {} ({}): {} qid {}: host {} authenticated to {} (DH-HMAC-CHAP, {}, DH group {}, {})",
                     info.id, info.peer, _ctrl->name(), _qid, _ctrl->hostnqn, _subsys->nqn(),
                     auth::hash_name(_auth->hash()), auth::dhgroup_name(_auth->dhgroup()),
                     _auth->bidirectional() ? "bidirectional" : "unidirectional");
        return;
    }
    _tgt.auth_backoff().failed(address, env::now_ns());
    spdlog::warn("conn {} ({}): {} qid {}: host {} failed authentication to {} (DH-HMAC-CHAP, {}, DH group {}): {}",
                 info.id, info.peer, _ctrl->name(), _qid, _ctrl->hostnqn, _subsys->nqn(),
                 _auth->hash() ? auth::hash_name(_auth->hash()) : "no hash chosen",
                 _auth->hash() ? auth::dhgroup_name(_auth->dhgroup()) : "none", auth::failure_name(_auth->reason()));
}

void queue::auth_timer(uint64_t now_ns) {
    if (_auth_held && now_ns >= _auth_release_ns) {
        auto& req = *_auth_held;
        _auth_held = nullptr;
        reply_data(req, _auth_answer.data(), _auth_answer.size());
        _auth_answer.clear();
        finish(req, nvme::sc::success);
        return;  // a failure answer just left: close on the next tick
    }
    if (_auth_held) return;
    if (_auth->failed()) {
        _conn.close("DH-HMAC-CHAP authentication failed");
        return;
    }
    if ((_auth->in_progress() || !_auth->authenticated()) && now_ns > _auth_deadline_ns) {
        spdlog::warn("conn {} ({}): {} qid {}: host {} did not complete DH-HMAC-CHAP authentication within 10 s",
                     _conn.info().id, _conn.info().peer, _ctrl->name(), _qid, _ctrl->hostnqn);
        _tgt.auth_backoff().failed(address_of(_conn.info().peer), now_ns);
        _conn.close("authentication time limit");
    }
}

}  // namespace ferry::target
