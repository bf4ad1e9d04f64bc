// Admin commands for I/O and discovery controllers (reference section 3).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include "target/queue.hh"
#include "target/target.hh"
#include "transport/connection.hh"

namespace ferry::target {
namespace {
constexpr uint16_t dnr = nvme::status_dnr;

constexpr uint32_t io_aen_mask = nvme::aen::cfg_ns_attr | nvme::aen::cfg_ana;  // OAES: the events raised
// What Set Features 0Bh accepts on an I/O controller: OAES plus the SMART critical-warning bits,
// which the spec makes mandatory to accept (nvmet does; SPDK's host sets them and, refused,
// arms no AER at all). ferryd raises no SMART event: the bits are stored and read back.
constexpr uint32_t io_aen_settable = io_aen_mask | nvme::aen::cfg_smart_critical;
constexpr uint8_t ana_transition_time_s = 10;  // ANATT; only a gateway group shows "change", for at most half of it
constexpr uint32_t disc_aen_mask = nvme::aen::cfg_discovery;

// An event type, by the log page its AEN names, for controller::aen_masked.
uint32_t aen_mask_bit(uint8_t lid) {
    switch (lid) {
        case nvme::lid::changed_ns:
            return 1;
        case nvme::lid::ana:
            return 2;
        case nvme::lid::discovery:
            return 4;
        default:
            return 0;
    }
}

void fill_identify_ctrl(nvme::identify_ctrl& id, const controller& c, bool discovery) {
    std::memset(&id, 0, sizeof(id));
    nvme::copy_padded(id.sn, sizeof(id.sn), c.subsys.serial());
    nvme::copy_padded(id.mn, sizeof(id.mn), c.subsys.model());
    nvme::copy_padded(id.fr, sizeof(id.fr), FERRY_VERSION);
    id.rab = 6;
    id.cmic = discovery ? 0 : 0x0B;  // multi-port, multi-controller, ANA reporting
    // 2^MDTS * 4 KiB = transport::max_transfer_bytes (8 MiB) for every store: the target splits a
    // command for a store (an SSD) that takes less.
    static_assert((4096u << 11) == transport::max_transfer_bytes);
    id.mdts = 11;
    id.cntlid = c.cntlid;
    id.ver = 0x00010400;
    id.oaes = discovery ? disc_aen_mask : io_aen_mask;
    id.ctratt = 0x01 | 0x40;  // 128-bit host id, traffic-based keep alive
    id.cntrltype = discovery ? 2 : 1;
    id.acl = 3;
    id.aerl = max_outstanding_aers - 1;
    id.frmw = 0x03;                 // slot 1 read-only, one slot
    id.lpa = discovery ? 0x04 : 0x07;  // SMART per NS, effects log; extended data (LPO) on both
    id.elpe = error_log::capacity - 1;
    id.npss = 0;
    id.kas = kato_granularity_ms / 100;  // 100 ms units: 1 s granularity
    if (!discovery) {
        id.anatt = ana_transition_time_s;
        // Reports optimized, non-optimized, inaccessible, persistent loss and change; bit 6
        // clear: a namespace's ANAGRPID may change (set_namespace_ana_group).
        id.anacap = 0x1F;
        id.anagrpmax = id.nanagrpid = max_ana_groups;
        id.mnan = max_nsid;  // Linux requires 0 < MNAN <= NN with ANA
    }
    id.sqes = 0x66;
    id.cqes = 0x44;
    id.maxcmd = max_queue_entries;
    id.nn = discovery ? 0 : max_nsid;
    id.oncs = discovery ? 0 : c.subsys.optional_commands();  // Compare, DSM, Write Zeroes if the stores do them
    id.vwc = discovery ? 0 : ((c.subsys.volatile_write_cache() ? 0x01 : 0) | (0x2 << 1));  // no flush broadcast
    id.sgls = 0x01 | (1u << 20);                             // SGLs; address as offset (in-capsule)
    nvme::copy_nul_padded(id.subnqn, sizeof(id.subnqn), c.subsys.nqn());
    id.ioccsz = (sizeof(nvme::sqe) + transport::in_capsule_bytes) / 16;
    id.iorcsz = sizeof(nvme::cqe) / 16;
    id.icdoff = 0;
    id.fcatt = 0;  // dynamic controller model
    id.msdbd = 1;
    id.ofcs = 1;                    // Disconnect supported
    id.dctype = 0;                  // not reported, as nvmet: 1 or 2 promise TP 8010 registration (DIM)
    id.psd[0][0] = 0xC4;            // max power 25 W (0x09C4 centiwatts)
    id.psd[0][1] = 0x09;
}

// ANA log page (LID 0Ch): every group that has namespaces, ascending, each with its state
// through this controller's listener and (unless `groups_only`, LSP RGO) its NSIDs ascending.
std::vector<uint8_t> ana_log(const controller& c, uint64_t change_count, bool groups_only) {
    std::map<uint32_t, std::vector<uint32_t>> groups;
    for (const auto& [nsid, n] : c.subsys.namespaces()) groups[n.ana_group.load()].push_back(nsid);  // NSID order
    std::vector<uint8_t> p(16);
    const uint16_t ngrps = static_cast<uint16_t>(groups.size());
    std::memcpy(&p[0], &change_count, 8);
    std::memcpy(&p[8], &ngrps, 2);
    for (const auto& [group, nsids] : groups) {
        const size_t at = p.size();
        const uint32_t count = groups_only ? 0 : static_cast<uint32_t>(nsids.size());
        p.resize(at + 32 + count * 4);
        std::memcpy(&p[at], &group, 4);
        std::memcpy(&p[at + 4], &count, 4);
        std::memcpy(&p[at + 8], &change_count, 8);
        p[at + 16] = static_cast<uint8_t>(c.ana->state(group));
        if (count) std::memcpy(&p[at + 32], nsids.data(), count * 4);
    }
    return p;
}

void put_u128(std::vector<uint8_t>& p, size_t at, uint64_t v) {
    std::memcpy(&p[at], &v, 8);
}

// SMART / Health Information (LID 02h) for the namespaces `which` (all for the controller-wide
// page): ferry's own counters, merged with what the SSDs behind them say about themselves.
std::vector<uint8_t> smart_page(const controller& c, const std::vector<const ns*>& which) {
    std::vector<uint8_t> p(512);
    const uint64_t now = coarse_now_ns();
    io_totals io;
    uint64_t media_errors = 0;
    std::optional<nvme::device_health> merged;
    for (const ns* n : which) {
        const io_totals t = n->stats->read(now);
        io += t;
        uint64_t ns_media = t.media_errors;
        if (auto h = n->store->health()) {
            // The SSD counts the errors it reported to us too: its counter, unless ours is higher.
            ns_media = std::max(ns_media, h->media_errors);
            if (!merged) {
                merged = *h;
            } else {
                merged->critical_warning |= h->critical_warning;
                merged->temperature_kelvin = std::max(merged->temperature_kelvin, h->temperature_kelvin);
                merged->available_spare = std::min(merged->available_spare, h->available_spare);
                merged->available_spare_threshold =
                    std::max(merged->available_spare_threshold, h->available_spare_threshold);
                merged->percentage_used = std::max(merged->percentage_used, h->percentage_used);
            }
        }
        media_errors += ns_media;
    }
    if (merged) {
        // Software stores have no temperature, spare or wear: those fields stay 0 without an SSD.
        p[0] = merged->critical_warning;
        std::memcpy(&p[1], &merged->temperature_kelvin, 2);
        p[3] = merged->available_spare;
        p[4] = merged->available_spare_threshold;
        p[5] = merged->percentage_used;
    }
    auto thousands_up = [](uint64_t units) { return (units + 999) / 1000; };  // 1 = 1..1000 units
    const uint64_t up_ns = now > c.subsys.started_ns() ? now - c.subsys.started_ns() : 0;
    put_u128(p, 32, thousands_up(io.read_units));
    put_u128(p, 48, thousands_up(io.write_units));
    put_u128(p, 64, io.read_commands);
    put_u128(p, 80, io.write_commands);
    put_u128(p, 96, io.busy_ns / 60'000'000'000ull);  // minutes with commands outstanding
    put_u128(p, 112, 1);                              // power cycles: this ferryd process (no state kept)
    put_u128(p, 128, up_ns / 3'600'000'000'000ull);   // power-on hours: since ferryd started
    put_u128(p, 144, 0);                              // unsafe shutdowns: unknown without persistent state
    put_u128(p, 160, media_errors);
    put_u128(p, 176, c.errors.count());
    return p;
}

void fill_identify_ns(nvme::identify_ns& id, const ns& n) {
    std::memset(&id, 0, sizeof(id));
    id.nsze = id.ncap = id.nuse = n.block_count();
    id.nlbaf = 0;
    id.flbas = 0;
    id.nmic = 1;  // may be attached to several controllers
    id.anagrpid = n.ana_group.load();
    id.dlfeat = n.store->deallocate_features();  // software stores: zeroes; an SSD: what it says
    std::memcpy(id.nguid, n.nguid.data(), 16);
    std::memcpy(id.eui64, n.eui64.data(), 8);
    id.lbaf[0].lbads = n.lbads;
}
}  // namespace

void queue::exec_admin(transport::request& req) {
    const uint8_t opc = req.cmd.opcode;
    const bool discovery = _ctrl->subsys.is_discovery();
    if (!(_ctrl->csts & nvme::csts::rdy) || (_ctrl->csts & nvme::csts::cfs)) {
        spdlog::warn("{}: admin opcode {:#04x} (cid {}) while the controller is not ready", _ctrl->name(), +opc,
                     +req.cmd.cid);
        return finish(req, nvme::sc::command_sequence_error | dnr);
    }
    switch (opc) {
        case nvme::admin_opc::identify:
            return exec_identify(req);
        case nvme::admin_opc::get_log_page:
            return exec_get_log_page(req);
        case nvme::admin_opc::set_features:
            return exec_set_features(req);
        case nvme::admin_opc::get_features:
            return exec_get_features(req);
        case nvme::admin_opc::async_event:
            return exec_async_event(req);
        case nvme::admin_opc::keep_alive:
            if (_ctrl->kato_ms.load() == 0) return finish(req, nvme::sc::keep_alive_invalid | dnr);
            return finish(req, nvme::sc::success);
        case nvme::admin_opc::abort:
            if (discovery) break;
            // Commands execute to completion here; "not aborted" (DW0 bit 0) as nvmet does.
            return finish(req, nvme::sc::success, 1);
        default:
            break;
    }
    spdlog::debug("{}: unsupported admin opcode {:#04x} (cid {})", _ctrl->name(), +opc, +req.cmd.cid);
    finish(req, nvme::sc::invalid_opcode | dnr);
}

void queue::exec_identify(transport::request& req) {
    const uint8_t cns = req.cmd.cdw10 & 0xFF;
    const uint8_t csi = static_cast<uint8_t>(req.cmd.cdw11 >> 24);
    const uint32_t nsid = req.cmd.nsid;
    const bool discovery = _ctrl->subsys.is_discovery();
    // Exactly one 4 KiB page, as nvmet (nvmet_check_transfer_len): SGLS bit 18 (a longer SGL
    // than the data) is not claimed, and a shorter buffer would get a truncated structure.
    if (req.dir != nvme::data_direction::ctrl_to_host || req.data_len != 4096)
        return finish(req, nvme::sc::sgl_invalid_data_length | dnr);
    if (discovery && cns != nvme::cns::ctrl) return finish(req, nvme::sc::invalid_field | dnr);

    alignas(8) uint8_t page[4096] = {};
    switch (cns) {
        case nvme::cns::ctrl:
            fill_identify_ctrl(*reinterpret_cast<nvme::identify_ctrl*>(page), *_ctrl, discovery);
            break;
        case nvme::cns::ns: {
            if (nsid == 0 || nsid == 0xFFFFFFFF) return finish(req, nvme::sc::invalid_namespace | dnr);
            auto n = _ctrl->subsys.find_ns(nsid);
            if (n) fill_identify_ns(*reinterpret_cast<nvme::identify_ns*>(page), *n);
            break;  // an inactive NSID reads as zeroes
        }
        case nvme::cns::active_ns_list: {
            if (nsid >= 0xFFFFFFFE) return finish(req, nvme::sc::invalid_namespace | dnr);
            auto* list = reinterpret_cast<uint32_t*>(page);
            size_t i = 0;
            for (const auto& [id, n] : _ctrl->subsys.namespaces())
                if (id > nsid && i < 1024) list[i++] = id;
            break;
        }
        case nvme::cns::ns_desc_list: {
            auto n = _ctrl->subsys.find_ns(nsid);
            if (!n) return finish(req, nvme::sc::invalid_namespace | dnr);
            size_t at = 0;
            auto add = [&](uint8_t type, const void* v, uint8_t len) {
                page[at] = type;
                page[at + 1] = len;
                std::memcpy(page + at + 4, v, len);
                at += 4 + len;
            };
            if (n->has_eui64()) add(nvme::nidt::eui64, n->eui64.data(), 8);  // only when configured
            add(nvme::nidt::nguid, n->nguid.data(), 16);
            add(nvme::nidt::uuid, n->uuid.data(), 16);
            const uint8_t nvm = 0;
            add(nvme::nidt::csi, &nvm, 1);
            break;
        }
        case nvme::cns::cs_ctrl:
            if (csi != 0) return finish(req, nvme::sc::invalid_field | dnr);
            break;  // NVM command set limits: none beyond MDTS
        case nvme::cns::cs_ns:
            if (csi != 0) return finish(req, nvme::sc::invalid_field | dnr);
            if (!_ctrl->subsys.find_ns(nsid)) return finish(req, nvme::sc::invalid_namespace | dnr);
            break;
        case nvme::cns::cs_indep_ns: {
            // I/O Command Set Independent Identify Namespace (NVMe 2.0 figure 280; Linux reads it
            // when VS >= 2.0 or CAP.CRMS): NMIC at 1, ANAGRPID at 4-7, NSTAT at 14 (not 13: that
            // is ENDGID's high byte). An inactive NSID reads as zeroes.
            if (nsid == 0 || nsid == 0xFFFFFFFF) return finish(req, nvme::sc::invalid_namespace | dnr);
            if (auto n = _ctrl->subsys.find_ns(nsid)) {
                page[1] = 1;  // NMIC: shareable
                const uint32_t group = n->ana_group.load();
                std::memcpy(page + 4, &group, sizeof(group));  // ANAGRPID, as CNS 00h's
                page[14] = 1;                                   // NSTAT: namespace ready
            }
            break;
        }
        default:
            spdlog::debug("{}: Identify CNS {:#x} not supported", _ctrl->name(), cns);
            return finish(req, nvme::sc::invalid_field | dnr);
    }
    reply_data(req, page, sizeof(page));
    finish(req, nvme::sc::success);
}

std::vector<uint8_t> queue::build_log(uint8_t lid, uint32_t nsid, bool& known) {
    known = true;
    const bool discovery = _ctrl->subsys.is_discovery();
    if (discovery) {
        if (lid == nvme::lid::discovery) return _tgt.discovery_log(_ctrl->hostnqn, _conn.info());
        known = false;
        return {};
    }
    switch (lid) {
        case nvme::lid::supported: {
            std::vector<uint8_t> p(1024);
            for (uint8_t l : {nvme::lid::supported, nvme::lid::error, nvme::lid::smart, nvme::lid::fw_slot,
                              nvme::lid::changed_ns, nvme::lid::cmd_effects, nvme::lid::ana})
                p[l * 4] = 1;  // LSUPP
            return p;
        }
        case nvme::lid::error:
            return _ctrl->errors.page();
        case nvme::lid::smart: {
            std::vector<const ns*> which;
            const auto all = _ctrl->subsys.namespaces();  // keeps them alive meanwhile
            if (nsid == 0 || nsid == 0xFFFFFFFF) {
                for (const auto& [id, n] : all) which.push_back(&n);
            } else if (auto it = all.table().find(nsid); it != all.table().end()) {
                which.push_back(it->second.get());  // checked by the caller (unless removed since)
            }
            return smart_page(*_ctrl, which);
        }
        case nvme::lid::fw_slot: {
            std::vector<uint8_t> p(512);
            p[0] = 1;  // active slot 1
            nvme::copy_padded(reinterpret_cast<char*>(&p[8]), 8, FERRY_VERSION);
            return p;
        }
        case nvme::lid::changed_ns: {
            std::vector<uint8_t> p(4096);
            auto& list = _ctrl->changed_nsids;
            if (list.size() > 1024) {
                const uint32_t overflow = 0xFFFFFFFF;
                std::memcpy(p.data(), &overflow, 4);
            } else if (!list.empty()) {
                std::memcpy(p.data(), list.data(), list.size() * 4);
            }
            return p;
        }
        case nvme::lid::cmd_effects: {
            std::vector<uint8_t> p(4096);
            auto set = [&](size_t base, uint8_t opc, uint32_t v) { std::memcpy(&p[base + opc * 4], &v, 4); };
            for (uint8_t opc : {nvme::admin_opc::get_log_page, nvme::admin_opc::identify, nvme::admin_opc::abort,
                                nvme::admin_opc::set_features, nvme::admin_opc::get_features,
                                nvme::admin_opc::async_event, nvme::admin_opc::keep_alive})
                set(0, opc, 1);
            set(1024, nvme::io_opc::flush, 1);
            set(1024, nvme::io_opc::read, 1);
            set(1024, nvme::io_opc::write, 1 | 2);  // CSUPP, LBCC
            // The optional ones as Identify ONCS says (narrowed to what the stores do).
            const uint16_t oncs = _ctrl->subsys.optional_commands();
            if (oncs & 0x01) set(1024, nvme::io_opc::compare, 1);
            if (oncs & 0x08) set(1024, nvme::io_opc::write_zeroes, 1 | 2);
            if (oncs & 0x04) set(1024, nvme::io_opc::dataset_mgmt, 1 | 2);
            return p;
        }
        default:
            known = false;
            return {};
    }
}

void queue::exec_get_log_page(transport::request& req) {
    const uint8_t lid = req.cmd.cdw10 & 0xFF;
    const bool rae = req.cmd.cdw10 & (1u << 15);
    const uint64_t numd = ((uint64_t(req.cmd.cdw11 & 0xFFFF) << 16) | (req.cmd.cdw10 >> 16)) + 1;
    const uint64_t offset = (uint64_t(req.cmd.cdw13) << 32) | req.cmd.cdw12;
    if (req.dir != nvme::data_direction::ctrl_to_host || numd * 4 != req.data_len)
        return finish(req, nvme::sc::sgl_invalid_data_length | dnr);
    if (offset & 3) return finish(req, nvme::sc::invalid_field | dnr);
    if (req.cmd.cdw14 & (1u << 23)) return finish(req, nvme::sc::invalid_field | dnr);  // offset type = index
    const uint32_t nsid = req.cmd.nsid;
    if (lid == nvme::lid::smart && !_ctrl->subsys.is_discovery() && nsid != 0 && nsid != 0xFFFFFFFF &&
        !_ctrl->subsys.find_ns(nsid))
        return finish(req, nvme::sc::invalid_namespace | dnr);
    bool known = false;
    std::vector<uint8_t> page;
    if (lid == nvme::lid::ana && !_ctrl->subsys.is_discovery()) {
        const bool rgo = (req.cmd.cdw10 >> 8) & 1;  // LSP bit 0: return groups only
        page = ana_log(*_ctrl, _tgt.ana_change_count().load(std::memory_order_acquire), rgo);
        known = true;
    } else {
        page = build_log(lid, nsid, known);
    }
    if (!known) {
        spdlog::debug("{}: Get Log Page LID {:#x} not supported", _ctrl->name(), lid);
        return finish(req, nvme::sc::invalid_log_page | dnr);
    }
    if (offset > page.size()) return finish(req, nvme::sc::invalid_field | dnr);
    reply_data(req, page.data(), page.size(), static_cast<size_t>(offset));
    if (!rae) {
        if (lid == nvme::lid::changed_ns) _ctrl->changed_nsids.clear();
        _ctrl->aen_masked &= ~aen_mask_bit(lid);  // the host has seen the change: report the next
    }
    finish(req, nvme::sc::success);
}

void queue::exec_set_features(transport::request& req) {
    const uint8_t fid = req.cmd.cdw10 & 0xFF;
    const bool save = req.cmd.cdw10 & (1u << 31);
    const uint32_t v = req.cmd.cdw11;
    const bool discovery = _ctrl->subsys.is_discovery();
    if (save) return finish(req, nvme::sc::feature_not_saveable | dnr);
    switch (fid) {
        case nvme::fid::num_queues: {
            if (discovery) break;
            // Only while no I/O queue is connected (the spec: before they are created; QEMU, SPDK):
            // the grant does not change under queues already connected to it.
            if (_ctrl->has_io_queues()) {
                spdlog::debug("{}: Set Features Number of Queues while I/O queues are connected", _ctrl->name());
                return finish(req, nvme::sc::command_sequence_error | dnr);
            }
            const uint32_t nsqr = v & 0xFFFF, ncqr = v >> 16;
            if (nsqr == 0xFFFF || ncqr == 0xFFFF) return finish(req, nvme::sc::invalid_field | dnr);
            const uint16_t granted = static_cast<uint16_t>(std::min<uint32_t>(std::min(nsqr, ncqr) + 1, max_io_queues));
            _ctrl->granted_io_queues.store(granted);
            spdlog::debug("{}: {} I/O queues requested, {} granted", _ctrl->name(), std::min(nsqr, ncqr) + 1, granted);
            const uint32_t g = granted - 1u;
            return finish(req, nvme::sc::success, g | (g << 16));
        }
        case nvme::fid::async_event: {
            const uint32_t allowed = discovery ? disc_aen_mask : io_aen_settable;
            if (v & ~allowed) return finish(req, nvme::sc::invalid_field | dnr);
            _ctrl->aen_config = v;
            deliver_events();
            return finish(req, nvme::sc::success, v);
        }
        case nvme::fid::keep_alive:
            _ctrl->kato_ms = round_kato_ms(v);
            return finish(req, nvme::sc::success);
        case nvme::fid::host_id:
            // Fixed by Connect on fabrics (nvmet, SPDK).
            if (discovery) break;
            return finish(req, nvme::sc::command_sequence_error | dnr);
        case nvme::fid::volatile_wc:
            // Not supported without a volatile write cache (Identify VWC bit 0 clear: rbd).
            if (discovery || !_ctrl->subsys.volatile_write_cache()) break;
            // The write cache is always on (Flush is honoured); disabling it is not offered.
            if (!(v & 1)) return finish(req, nvme::sc::feature_not_changeable | dnr);
            return finish(req, nvme::sc::success);
        default:
            break;
    }
    spdlog::debug("{}: Set Features FID {:#x} not supported", _ctrl->name(), fid);
    finish(req, nvme::sc::invalid_field | dnr);
}

void queue::exec_get_features(transport::request& req) {
    const uint8_t fid = req.cmd.cdw10 & 0xFF;
    const uint8_t sel = (req.cmd.cdw10 >> 8) & 7;
    const bool discovery = _ctrl->subsys.is_discovery();
    if (sel > 3) return finish(req, nvme::sc::invalid_field | dnr);
    // SEL 010b (saved): no feature is saveable, so the spec gives the default (SEL 001b), as
    // QEMU does; nvmet ignores SEL. `nvme get-feature -s 2` then works for every FID.
    const bool defaults = sel == 1 || sel == 2;
    const bool caps = sel == 3;
    // A feature offered answers in dword 0 and takes no buffer, as nvmet (nvmet_feat_data_len):
    // the buffer would go back to the host as the pool left it, another connection's data.
    // Checked once the FID is known to be offered: nvme-cli sends buffers for the FIDs that have
    // data (03h, 0Ch, 0Eh, ...) and, walking all FIDs, goes on only past Invalid Field.
    const auto answer = [&](uint32_t dw0) {
        if (req.data_len == 0) return finish(req, nvme::sc::success, dw0);
        spdlog::debug("{}: Get Features FID {:#x} (cid {}) with {} bytes of data, none expected", _ctrl->name(), fid,
                      +req.cmd.cid, req.data_len);
        finish(req, nvme::sc::sgl_invalid_data_length | dnr);
    };
    switch (fid) {
        case nvme::fid::num_queues:
            if (discovery) break;
            if (caps) return answer(0x4);
            {
                const uint16_t asked = defaults ? 0 : _ctrl->granted_io_queues.load();
                const uint32_t g = (asked ? asked : max_io_queues) - 1u;
                return answer(g | (g << 16));
            }
        case nvme::fid::async_event:
            return answer(caps ? 0x4 : (defaults ? 0 : _ctrl->aen_config));
        case nvme::fid::keep_alive:
            return answer(caps ? 0x4 : _ctrl->kato_ms.load());
        case nvme::fid::volatile_wc:
            if (discovery || !_ctrl->subsys.volatile_write_cache()) break;  // as Set Features
            return answer(caps ? 0 : 1);
        case nvme::fid::arbitration:
        case nvme::fid::power_mgmt:
        case nvme::fid::error_recovery:
        case nvme::fid::write_atomicity:
            if (discovery) break;
            return answer(0);
        case nvme::fid::temp_threshold:
            if (discovery) break;
            return answer(caps ? 0 : 273 + 70);
        case nvme::fid::host_id:
            if (discovery || caps) break;
            if (!(req.cmd.cdw11 & 1)) return finish(req, nvme::sc::invalid_field | dnr);  // 64-bit: not on fabrics
            if (req.data_len != 16 || req.dir != nvme::data_direction::ctrl_to_host)
                return finish(req, nvme::sc::sgl_invalid_data_length | dnr);
            reply_data(req, _ctrl->hostid.data(), 16);
            return finish(req, nvme::sc::success);
        default:
            break;
    }
    spdlog::debug("{}: Get Features FID {:#x} not supported", _ctrl->name(), fid);
    finish(req, nvme::sc::invalid_field | dnr);
}

void queue::exec_async_event(transport::request& req) {
    if (_aers.size() >= max_outstanding_aers) return finish(req, nvme::sc::aer_limit_exceeded | dnr);
    _aers.push_back(&req);  // completed when an event is raised
    deliver_events();
}

void queue::raise_event(uint32_t aen_result) {
    if (!_ctrl || _qid != 0) return;
    if (aen_result == nvme::aen::ns_changed && !(_ctrl->aen_config & nvme::aen::cfg_ns_attr)) return;
    if (aen_result == nvme::aen::discovery_changed && !(_ctrl->aen_config & nvme::aen::cfg_discovery)) return;
    if (aen_result == nvme::aen::ana_changed && !(_ctrl->aen_config & nvme::aen::cfg_ana)) return;
    // Once reported (or queued), an event type stays masked until the host reads its log page
    // with RAE cleared: the log holds every change meanwhile (NVMe 2.0 5.2; nvmet's aen_masked).
    const uint32_t bit = aen_mask_bit(static_cast<uint8_t>(aen_result >> 16));
    if (_ctrl->aen_masked & bit) return;
    _ctrl->aen_masked |= bit;
    _ctrl->pending_events.push_back(aen_result);
    deliver_events();
}

// The host reused the CID of a parked AER: it has forgotten that AER (SPDK's host aborts its
// AERs locally when it detaches and then reads CC with one of their CIDs). Dropped unanswered,
// as a completion with that CID would now answer the new command. Other commands keep their
// CID: the new one gets Command ID Conflict.
bool queue::abandon(uint16_t cid) {
    auto it = std::find_if(_aers.begin(), _aers.end(), [&](const transport::request* r) { return r->cmd.cid == cid; });
    if (it == _aers.end()) return false;
    transport::request* r = *it;
    _aers.erase(it);
    spdlog::debug("{}: the host reused cid {} of an outstanding Async Event Request: that AER is dropped",
                  _ctrl ? _ctrl->name() : std::string("admin queue"), +cid);
    _conn.drop(*r);
    return true;
}

void queue::deliver_events() {
    auto& pending = _ctrl->pending_events;
    while (!pending.empty() && !_aers.empty()) {
        transport::request* r = _aers.front();
        _aers.erase(_aers.begin());
        const uint32_t ev = pending.front();
        pending.erase(pending.begin());
        finish(*r, nvme::sc::success, ev);
    }
}

}  // namespace ferry::target
