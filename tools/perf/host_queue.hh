// One NVMe/TCP host queue pair of ferry-perf: a user-space initiator connection. Blocking
// set-up (ICReq, Connect, admin commands), then non-blocking, batched I/O: submit() queues
// capsules, poll() sends them with one sendmsg and reads completions with large recvs.
// Owned by one thread. Written against the NVMe/TCP specification, not against ferryd: it
// also drives the Linux kernel target.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "nvme/spec.hh"
#include "transport/pdu.hh"

namespace ferry::perf {

class protocol_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct completion {
    uint16_t cid;
    uint16_t status;  // SCT<<8|SC (|DNR)
    uint32_t dw0;
    uint32_t dw1;
};

class host_queue {
public:
    // Connects to addr:port (numeric address or host name). Throws on failure.
    host_queue(const std::string& addr, uint16_t port, bool hdgst, bool ddgst);
    ~host_queue();
    host_queue(const host_queue&) = delete;
    host_queue& operator=(const host_queue&) = delete;

    // ICReq/ICResp; checks the target's answer as the Linux host does.
    void handshake();
    // Fabrics Connect; returns the completion (dw0 = CNTLID on success). `depth` = sqsize + 1.
    completion connect(const std::string& subnqn, const std::string& hostnqn, const uint8_t hostid[16],
                       uint16_t qid, uint16_t cntlid, uint16_t depth, uint32_t kato_ms);

    // Blocking command: submit, wait for it. `data` is written (host->ctrl) or filled
    // (ctrl->host) according to the opcode's direction.
    completion execute(const nvme::sqe& cmd, std::span<uint8_t> data);
    uint64_t property_get(uint32_t offset, bool eight);
    void property_set(uint32_t offset, uint32_t value);

    // Asynchronous I/O. `cmd.cid` must be a free slot index below depth(); `data` must stay
    // valid until its completion. Returns false if the slot is busy.
    void submit(const nvme::sqe& cmd, std::span<uint8_t> data);
    // Sends what is queued and reaps completions; calls `done` for each. Returns the number
    // reaped. Never blocks.
    unsigned poll(const std::function<void(const completion&)>& done);

    void set_in_capsule_limit(uint32_t bytes) { _in_capsule = bytes; }
    // Largest data transfer of one command: a C2HData PDU carrying it must fit the receive buffer.
    void set_max_transfer(uint32_t bytes) {
        if (_rx.size() < bytes + 65536u) _rx.resize(bytes + 65536u);
    }
    uint32_t maxh2cdata() const { return _maxh2cdata; }
    uint16_t depth() const { return _depth; }
    int fd() const { return _fd; }

private:
    struct slot {
        std::span<uint8_t> data;
        nvme::data_direction dir = nvme::data_direction::none;
        bool busy = false;
        uint32_t c2h_done = 0;
    };
    struct tx_entry {
        iovec iov;
        int hdr;  // header buffer to free once sent, or -1 for payload
    };
    uint8_t* take_header();
    void queue_tx(const void* p, size_t n, int hdr = -1);
    void flush(bool wait);
    bool receive();
    void handle_pdu(const uint8_t* pdu, size_t len, std::vector<completion>& out);
    void send_h2c(slot& s, uint16_t cid, uint16_t ttag, uint32_t offset, uint32_t length);

    int _fd = -1;
    transport::digests _dg;
    uint16_t _depth = 1;
    uint16_t _qid = 0;
    uint32_t _in_capsule = 8192;
    uint32_t _maxh2cdata = 4096;
    std::vector<slot> _slots;

    // transmit: PDU headers come from a fixed set of 128-byte buffers, payload is referenced
    std::vector<uint8_t> _hdr_mem;
    std::vector<int> _hdr_free;
    std::vector<tx_entry> _tx;
    size_t _tx_head = 0;
    std::vector<iovec> _iov_scratch;
    std::vector<uint32_t> _ddgst;  // one data digest word per header buffer

    // receive
    std::vector<uint8_t> _rx;
    size_t _rx_have = 0;
    std::vector<completion> _pending;
};

}  // namespace ferry::perf
