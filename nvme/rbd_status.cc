// How RADOS/librbd errors reach the host (built with or without librbd).
#include <cerrno>

#include "nvme/block_queue.hh"

namespace ferry::nvme {

// RADOS/librbd errors as NVMe statuses (see README.md: "rbd backend").
uint16_t rbd_error_status(int err, uint8_t opcode) {
    switch (err) {
        case -ENOENT:     // the image (or its pool) was removed under us
        case -ESHUTDOWN:  // = EBLOCKLISTED: this client was fenced; another gateway owns the image
        case -ENOTCONN:   // the cluster handle is shut down
        case -ETIMEDOUT:  // the cluster did not answer in time (rados_osd_op_timeout)
            // Not about the data: this path cannot reach the image. No DNR, so a multipath host
            // fails over to another path and a single-path host retries.
            return sc::controller_path_error;
        case -ENOSPC:
        case -EDQUOT:
            return sc::capacity_exceeded | status_dnr;  // pool full or quota reached
        case -EROFS:
            return sc::write_fault | status_dnr;  // image is read-only (snapshot, mirror secondary)
        case -ENOMEM:
            return sc::internal_error;  // no completion could be made: not the data's fault
        default:
            break;
    }
    // Whatever else (-EIO, ...): a media error as the host expects it for that command.
    if (opcode == io_opc::read || opcode == io_opc::compare) return sc::unrecovered_read_error;
    if (opcode == io_opc::write || opcode == io_opc::write_zeroes) return sc::write_fault;
    return sc::internal_error;
}

}  // namespace ferry::nvme
