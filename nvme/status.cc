#include "nvme/spec.hh"

namespace ferry::nvme {

const char* status_name(uint16_t status) {
    switch (status & 0x7FF) {
    case sc::success: return "success";
    case sc::invalid_opcode: return "invalid opcode";
    case sc::invalid_field: return "invalid field";
    case sc::cid_conflict: return "command id conflict";
    case sc::data_transfer_error: return "data transfer error";
    case sc::internal_error: return "internal error";
    case sc::aborted_by_request: return "aborted by request";
    case sc::aborted_sq_deletion: return "aborted (SQ deletion)";
    case sc::invalid_namespace: return "invalid namespace or format";
    case sc::command_sequence_error: return "command sequence error";
    case sc::sgl_invalid_data_length: return "data SGL length invalid";
    case sc::sgl_invalid_type: return "SGL descriptor type invalid";
    case sc::sgl_invalid_offset: return "SGL offset invalid";
    case sc::keep_alive_expired: return "keep alive timer expired";
    case sc::keep_alive_invalid: return "keep alive timeout invalid";
    case sc::transient_transport_error: return "transient transport error";
    case sc::lba_out_of_range: return "LBA out of range";
    case sc::invalid_queue_id: return "invalid queue identifier";
    case sc::invalid_queue_size: return "invalid queue size";
    case sc::aer_limit_exceeded: return "async event request limit exceeded";
    case sc::invalid_log_page: return "invalid log page";
    case sc::feature_not_saveable: return "feature not saveable";
    case sc::connect_incompatible_format: return "connect: incompatible format / DSM conflicting attributes";
    case sc::connect_ctrl_busy: return "connect: controller busy";
    case sc::connect_invalid_param: return "connect: invalid parameters";
    case sc::connect_restart_disc: return "connect: restart discovery";
    case sc::connect_invalid_host: return "connect: invalid host";
    case sc::invalid_queue_type: return "invalid queue type";
    case sc::compare_failure: return "compare failure";
    case sc::write_fault: return "write fault";
    case sc::unrecovered_read_error: return "unrecovered read error";
    default: return "other status";
    }
}

}  // namespace ferry::nvme
