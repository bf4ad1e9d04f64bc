#include "mgmt/control_plane.hh"

#include "mgmt/stats.hh"
#include "transport/listener.hh"

namespace ferry::mgmt {
namespace {

class target_control_plane final : public control_plane {
public:
    target_control_plane(target::target& tgt, transport::acceptor& acc, std::vector<transport::reactor*> reactors)
        : _tgt(tgt), _acc(acc), _rt{tgt, std::move(reactors)} {}

    void add_subsystem(const target::subsystem_config& cfg) override { _tgt.add_subsystem(cfg); }
    void remove_subsystem(const std::string& nqn) override { _tgt.remove_subsystem(nqn); }
    void update_subsystem(const std::string& nqn, const target::subsystem_patch& p) override {
        _tgt.update_subsystem(nqn, p);
    }
    uint32_t add_namespace(const std::string& nqn, target::namespace_config cfg) override {
        return _tgt.add_namespace(nqn, std::move(cfg));
    }
    void remove_namespace(const std::string& nqn, uint32_t nsid) override { _tgt.remove_namespace(nqn, nsid); }
    void resize_namespace(const std::string& nqn, uint32_t nsid, uint64_t size) override {
        _tgt.resize_namespace(nqn, nsid, size);
    }
    void add_host(const std::string& nqn, const std::string& h, const target::host_keys& keys) override {
        _tgt.add_host(nqn, h, keys);
    }
    void set_host_keys(const std::string& nqn, const std::string& h, const target::host_keys& keys) override {
        _tgt.set_host_keys(nqn, h, keys);
    }
    void remove_host(const std::string& nqn, const std::string& h) override { _tgt.remove_host(nqn, h); }
    void drop_controller(const std::string& nqn, uint16_t cntlid) override { _tgt.drop_controller(nqn, cntlid); }

    // The socket first (a port in use fails here, before the discovery log shows it), then the
    // target's view; the socket is closed again if the target refuses. A duplicate listener is
    // refused (409) by the API before it gets here.
    void add_listener(const target::listener_config& l) override {
        try {
            _acc.listen({l.address, l.port, l.tls});
        } catch (const std::exception& e) {
            throw target::change_error(target::change_errc::failed, e.what());
        }
        try {
            _tgt.add_listener(l);
        } catch (...) {
            try {
                _acc.unlisten({l.address, l.port});
            } catch (...) {
            }
            throw;
        }
    }
    void remove_listener(const std::string& address, uint16_t port) override {
        target::listener_config had{address, port};
        for (const auto& l : _tgt.current_config().listeners)
            if (l.address == address && l.port == port) had = l;
        _tgt.remove_listener(address, port);  // not_found before the socket is touched
        try {
            _acc.unlisten({address, port});
        } catch (const std::exception& e) {
            _tgt.add_listener(had);  // with its TLS mode
            throw target::change_error(target::change_errc::failed, e.what());
        }
    }
    void set_ana_state(const std::string& address, uint16_t port, uint32_t group, target::ana_state s) override {
        _tgt.set_ana_state(address, port, group, s);
    }
    void set_namespace_ana_group(const std::string& nqn, uint32_t nsid, uint32_t group) override {
        _tgt.set_namespace_ana_group(nqn, nsid, group);
    }
    target::target::managed_ana_view managed_ana() const override { return _tgt.managed_ana(); }
    void add_referral(const target::referral_config& r) override { _tgt.add_referral(r); }
    void remove_referral(const std::string& address, uint16_t port) override { _tgt.remove_referral(address, port); }
    target::target_config current_config() const override { return _tgt.current_config(); }
    std::vector<target::controller_view> controllers(const std::string& nqn) const override {
        return _tgt.controllers(nqn);
    }
    nlohmann::json stats() const override { return stats_json(_rt); }
    std::string metrics() const override { return metrics_text(_rt); }

private:
    target::target& _tgt;
    transport::acceptor& _acc;
    runtime _rt;
};

}  // namespace

std::unique_ptr<control_plane> make_target_control_plane(target::target& tgt, transport::acceptor& acc,
                                                         std::vector<transport::reactor*> reactors) {
    return std::make_unique<target_control_plane>(tgt, acc, std::move(reactors));
}

}  // namespace ferry::mgmt
