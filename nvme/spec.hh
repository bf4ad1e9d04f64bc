// NVMe base and fabrics wire types shared by every layer (NVMe Base 2.0, NVMe-oF 1.1).
// Layouts follow ../shared/docs/nvme-reference.md sections 2-4; sizes and offsets are
// static_asserted so a typo cannot silently shift a field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace ferry::nvme {

// ---- Submission / completion queue entries (reference 4.1, 4.2) ----

struct sgl_descriptor {
    uint64_t address;
    uint32_t length;
    uint8_t reserved[3];
    uint8_t type;  // bits 7:4 type, 3:0 subtype
} __attribute__((packed));
static_assert(sizeof(sgl_descriptor) == 16);

inline constexpr uint8_t sgl_data_block_offset = 0x01;     // in-capsule data (type 0, subtype 1)
inline constexpr uint8_t sgl_transport_data_block = 0x5A;  // data via R2T/C2HData

struct sqe {
    uint8_t opcode;
    uint8_t flags;  // FUSE 1:0, PSDT 7:6
    uint16_t cid;
    uint32_t nsid;
    uint32_t cdw2;
    uint32_t cdw3;
    uint64_t mptr;
    sgl_descriptor sgl;  // PRP1/PRP2 on PCIe
    uint32_t cdw10;
    uint32_t cdw11;
    uint32_t cdw12;
    uint32_t cdw13;
    uint32_t cdw14;
    uint32_t cdw15;
} __attribute__((packed));
static_assert(sizeof(sqe) == 64);
static_assert(offsetof(sqe, sgl) == 24);
static_assert(offsetof(sqe, cdw10) == 40);
// PSDT (sqe::flags 7:6). Fabrics carry data by SGL only, with MPTR a contiguous buffer (01b): what
// every Linux and SPDK host sends, and the one value nvmet accepts.
inline constexpr uint8_t psdt_mask = 0xC0;
inline constexpr uint8_t psdt_sgl_contiguous = 0x40;

struct cqe {
    uint32_t dw0;
    uint32_t dw1;
    uint16_t sqhd;
    uint16_t sqid;
    uint16_t cid;
    uint16_t status;  // bit 0 phase, 15:1 status field (see make_status)
} __attribute__((packed));
static_assert(sizeof(cqe) == 16);

// ---- Status codes (reference 4.4, 2.3). Values are SCT<<8 | SC, the Linux convention;
// the CQE status word is (value << 1) with DNR at bit 15. ----

enum class sct : uint8_t { generic = 0, command_specific = 1, media = 2, path = 3 };

namespace sc {
// generic
inline constexpr uint16_t success = 0x000;
inline constexpr uint16_t invalid_opcode = 0x001;
inline constexpr uint16_t invalid_field = 0x002;
inline constexpr uint16_t cid_conflict = 0x003;
inline constexpr uint16_t data_transfer_error = 0x004;
inline constexpr uint16_t internal_error = 0x006;
inline constexpr uint16_t aborted_by_request = 0x007;
inline constexpr uint16_t aborted_sq_deletion = 0x008;
inline constexpr uint16_t invalid_namespace = 0x00B;
inline constexpr uint16_t command_sequence_error = 0x00C;
inline constexpr uint16_t sgl_invalid_last = 0x00D;
inline constexpr uint16_t sgl_invalid_count = 0x00E;
inline constexpr uint16_t sgl_invalid_data_length = 0x00F;
inline constexpr uint16_t sgl_invalid_type = 0x011;
inline constexpr uint16_t sgl_invalid_offset = 0x016;
inline constexpr uint16_t keep_alive_expired = 0x019;
inline constexpr uint16_t keep_alive_invalid = 0x01A;
inline constexpr uint16_t transient_transport_error = 0x022;
inline constexpr uint16_t lba_out_of_range = 0x080;
inline constexpr uint16_t capacity_exceeded = 0x081;
inline constexpr uint16_t ns_not_ready = 0x082;
// command specific (SCT 1)
inline constexpr uint16_t invalid_queue_id = 0x101;
inline constexpr uint16_t invalid_queue_size = 0x102;
inline constexpr uint16_t abort_limit = 0x103;
inline constexpr uint16_t aer_limit_exceeded = 0x105;
inline constexpr uint16_t invalid_log_page = 0x109;
inline constexpr uint16_t feature_not_saveable = 0x10D;
inline constexpr uint16_t feature_not_changeable = 0x10E;
inline constexpr uint16_t dsm_conflicting_attrs = 0x180;
// fabrics (SCT 1)
inline constexpr uint16_t connect_incompatible_format = 0x180;
inline constexpr uint16_t connect_ctrl_busy = 0x181;
inline constexpr uint16_t connect_invalid_param = 0x182;
inline constexpr uint16_t connect_restart_disc = 0x183;
inline constexpr uint16_t connect_invalid_host = 0x184;
inline constexpr uint16_t invalid_queue_type = 0x185;
// media and data integrity (SCT 2)
inline constexpr uint16_t write_fault = 0x280;
inline constexpr uint16_t unrecovered_read_error = 0x281;
inline constexpr uint16_t compare_failure = 0x285;
// path related (SCT 3): the command did not reach the media; a host may retry it elsewhere
inline constexpr uint16_t internal_path_error = 0x300;
inline constexpr uint16_t ana_persistent_loss = 0x301;
inline constexpr uint16_t ana_inaccessible = 0x302;
inline constexpr uint16_t ana_transition = 0x303;
inline constexpr uint16_t controller_path_error = 0x360;
}  // namespace sc

inline constexpr uint16_t status_dnr = 0x4000;  // in the SCT<<8|SC convention

// CQE status word from an SCT<<8|SC value with the optional DNR flag (phase bit 0).
constexpr uint16_t cqe_status(uint16_t status) {
    return static_cast<uint16_t>(((status & 0x7FF) << 1) | ((status & status_dnr) ? 0x8000 : 0));
}
constexpr uint16_t status_from_cqe(uint16_t word) {
    return static_cast<uint16_t>(((word >> 1) & 0x7FF) | ((word & 0x8000) ? status_dnr : 0));
}
const char* status_name(uint16_t status);

// ---- Opcodes ----

namespace admin_opc {
inline constexpr uint8_t delete_sq = 0x00, create_sq = 0x01, get_log_page = 0x02, delete_cq = 0x04,
                         create_cq = 0x05, identify = 0x06, abort = 0x08, set_features = 0x09,
                         get_features = 0x0A, async_event = 0x0C, keep_alive = 0x18, fabrics = 0x7F;
}
namespace io_opc {
inline constexpr uint8_t flush = 0x00, write = 0x01, read = 0x02, compare = 0x05, write_zeroes = 0x08,
                         dataset_mgmt = 0x09;
}
namespace fctype {
inline constexpr uint8_t property_set = 0x00, connect = 0x01, property_get = 0x04, auth_send = 0x05,
                         auth_recv = 0x06, disconnect = 0x08;
}

// Read/Write/Compare/Write Zeroes: starting LBA (CDW10-11) and block count (CDW12 NLB, 0-based).
inline uint64_t io_slba(const sqe& c) { return (static_cast<uint64_t>(c.cdw11) << 32) | c.cdw10; }
inline uint32_t io_nlb(const sqe& c) { return (c.cdw12 & 0xFFFF) + 1; }

// Dataset Management range (16 bytes; the length is 1-based, unlike NLB).
struct dsm_range {
    uint32_t attributes;
    uint32_t length;
    uint64_t slba;
} __attribute__((packed));
static_assert(sizeof(dsm_range) == 16);

// Data direction from an opcode's two low bits (also used for fabrics fctype).
enum class data_direction : uint8_t { none = 0, host_to_ctrl = 1, ctrl_to_host = 2, bidirectional = 3 };
constexpr data_direction direction_of(uint8_t opcode_or_fctype) {
    return static_cast<data_direction>(opcode_or_fctype & 3);
}

// ---- Fabrics command layouts (reference 2.1 - 2.4) ----

struct fabrics_sqe {
    uint8_t opcode;
    uint8_t flags;
    uint16_t cid;
    uint8_t fctype;
    uint8_t reserved1[19];
    sgl_descriptor sgl;
    uint8_t specific[24];
} __attribute__((packed));
static_assert(sizeof(fabrics_sqe) == 64);

struct connect_sqe {
    uint8_t opcode;
    uint8_t flags;
    uint16_t cid;
    uint8_t fctype;
    uint8_t reserved1[19];
    sgl_descriptor sgl;
    uint16_t recfmt;
    uint16_t qid;
    uint16_t sqsize;
    uint8_t cattr;
    uint8_t reserved2;
    uint32_t kato;
    uint8_t reserved3[12];
} __attribute__((packed));
static_assert(sizeof(connect_sqe) == 64);
static_assert(offsetof(connect_sqe, recfmt) == 40);
static_assert(offsetof(connect_sqe, kato) == 48);
inline constexpr uint8_t cattr_disable_sqflow = 0x04;

struct connect_data {
    uint8_t hostid[16];
    uint16_t cntlid;
    uint8_t reserved1[238];
    char subnqn[256];
    char hostnqn[256];
    uint8_t reserved2[256];
} __attribute__((packed));
static_assert(sizeof(connect_data) == 1024);
static_assert(offsetof(connect_data, subnqn) == 256);
static_assert(offsetof(connect_data, hostnqn) == 512);

struct property_sqe {
    uint8_t opcode;
    uint8_t flags;
    uint16_t cid;
    uint8_t fctype;
    uint8_t reserved1[35];
    uint8_t attrib;
    uint8_t reserved2[3];
    uint32_t offset;
    uint64_t value;
    uint8_t reserved3[8];
} __attribute__((packed));
static_assert(sizeof(property_sqe) == 64);
static_assert(offsetof(property_sqe, attrib) == 40);
static_assert(offsetof(property_sqe, offset) == 44);
static_assert(offsetof(property_sqe, value) == 48);

// Connect Invalid Parameters: DW0 IPO (byte offset) and IATTR (0 = SQE, 1 = connect data).
constexpr uint32_t connect_ipo_sqe(uint16_t offset) { return offset; }
constexpr uint32_t connect_ipo_data(uint16_t offset) { return (1u << 16) | offset; }

// ---- Controller properties (reference 2.5) ----

namespace reg {
inline constexpr uint32_t cap = 0x00, vs = 0x08, cc = 0x14, csts = 0x1C;
}
namespace cc {
inline constexpr uint32_t en = 1u << 0;
constexpr uint32_t css(uint32_t v) { return (v >> 4) & 7; }
constexpr uint32_t mps(uint32_t v) { return (v >> 7) & 0xF; }
constexpr uint32_t ams(uint32_t v) { return (v >> 11) & 7; }
constexpr uint32_t shn(uint32_t v) { return (v >> 14) & 3; }
constexpr uint32_t iosqes(uint32_t v) { return (v >> 16) & 0xF; }
constexpr uint32_t iocqes(uint32_t v) { return (v >> 20) & 0xF; }
}  // namespace cc
namespace csts {
inline constexpr uint32_t rdy = 1u << 0, cfs = 1u << 1, shst_occurring = 1u << 2, shst_complete = 2u << 2,
                          shst_mask = 3u << 2;
}

inline constexpr std::string_view discovery_nqn = "nqn.2014-08.org.nvmexpress.discovery";
inline constexpr size_t nqn_max_len = 223;

// ---- Identify (reference 3.2) ----

namespace cns {
inline constexpr uint8_t ns = 0x00, ctrl = 0x01, active_ns_list = 0x02, ns_desc_list = 0x03,
                         cs_ns = 0x05, cs_ctrl = 0x06, cs_active_ns_list = 0x07, cs_indep_ns = 0x08;
}

struct identify_ctrl {
    uint16_t vid;          // 0
    uint16_t ssvid;        // 2
    char sn[20];           // 4
    char mn[40];           // 24
    char fr[8];            // 64
    uint8_t rab;           // 72
    uint8_t ieee[3];       // 73
    uint8_t cmic;          // 76
    uint8_t mdts;          // 77
    uint16_t cntlid;       // 78
    uint32_t ver;          // 80
    uint32_t rtd3r;        // 84
    uint32_t rtd3e;        // 88
    uint32_t oaes;         // 92
    uint32_t ctratt;       // 96
    uint8_t reserved1[11]; // 100
    uint8_t cntrltype;     // 111
    uint8_t fguid[16];     // 112
    uint16_t crdt[3];      // 128
    uint8_t reserved2[122];
    uint16_t oacs;         // 256
    uint8_t acl;           // 258
    uint8_t aerl;          // 259
    uint8_t frmw;          // 260
    uint8_t lpa;           // 261
    uint8_t elpe;          // 262
    uint8_t npss;          // 263
    uint8_t avscc;         // 264
    uint8_t apsta;         // 265
    uint16_t wctemp;       // 266
    uint16_t cctemp;       // 268
    uint8_t reserved3[50];
    uint16_t kas;          // 320
    uint8_t reserved4[20];
    uint8_t anatt;         // 342
    uint8_t anacap;        // 343
    uint32_t anagrpmax;    // 344
    uint32_t nanagrpid;    // 348
    uint8_t reserved4b[160];
    uint8_t sqes;          // 512
    uint8_t cqes;          // 513
    uint16_t maxcmd;       // 514
    uint32_t nn;           // 516
    uint16_t oncs;         // 520
    uint16_t fuses;        // 522
    uint8_t fna;           // 524
    uint8_t vwc;           // 525
    uint16_t awun;         // 526
    uint16_t awupf;        // 528
    uint8_t icsvscc;       // 530
    uint8_t nwpc;          // 531
    uint16_t acwu;         // 532
    uint16_t ocfs;         // 534
    uint32_t sgls;         // 536
    uint32_t mnan;         // 540
    uint8_t reserved5[224];
    char subnqn[256];      // 768
    uint8_t reserved6[768];
    uint32_t ioccsz;       // 1792
    uint32_t iorcsz;       // 1796
    uint16_t icdoff;       // 1800
    uint8_t fcatt;         // 1802
    uint8_t msdbd;         // 1803
    uint16_t ofcs;         // 1804
    uint8_t dctype;        // 1806
    uint8_t reserved7[241];
    uint8_t psd[32][32];   // 2048
    uint8_t vs[1024];      // 3072
} __attribute__((packed));
static_assert(sizeof(identify_ctrl) == 4096);
static_assert(offsetof(identify_ctrl, cntrltype) == 111);
static_assert(offsetof(identify_ctrl, oacs) == 256);
static_assert(offsetof(identify_ctrl, kas) == 320);
static_assert(offsetof(identify_ctrl, anatt) == 342);
static_assert(offsetof(identify_ctrl, nanagrpid) == 348);
static_assert(offsetof(identify_ctrl, sqes) == 512);
static_assert(offsetof(identify_ctrl, sgls) == 536);
static_assert(offsetof(identify_ctrl, subnqn) == 768);
static_assert(offsetof(identify_ctrl, ioccsz) == 1792);
static_assert(offsetof(identify_ctrl, dctype) == 1806);
static_assert(offsetof(identify_ctrl, psd) == 2048);

struct lba_format {
    uint16_t ms;
    uint8_t lbads;
    uint8_t rp;
} __attribute__((packed));

struct identify_ns {
    uint64_t nsze;          // 0
    uint64_t ncap;          // 8
    uint64_t nuse;          // 16
    uint8_t nsfeat;         // 24
    uint8_t nlbaf;          // 25
    uint8_t flbas;          // 26
    uint8_t mc;             // 27
    uint8_t dpc;            // 28
    uint8_t dps;            // 29
    uint8_t nmic;           // 30
    uint8_t rescap;         // 31
    uint8_t fpi;            // 32
    uint8_t dlfeat;         // 33
    uint16_t nawun;         // 34
    uint16_t nawupf;        // 36
    uint16_t nacwu;         // 38
    uint16_t nabsn;         // 40
    uint16_t nabo;          // 42
    uint16_t nabspf;        // 44
    uint16_t noiob;         // 46
    uint8_t nvmcap[16];     // 48
    uint16_t npwg;          // 64
    uint16_t npwa;          // 66
    uint16_t npdg;          // 68
    uint16_t npda;          // 70
    uint16_t nows;          // 72
    uint8_t reserved1[18];
    uint32_t anagrpid;      // 92
    uint8_t reserved2[3];
    uint8_t nsattr;         // 99
    uint16_t nvmsetid;      // 100
    uint16_t endgid;        // 102
    uint8_t nguid[16];      // 104
    uint8_t eui64[8];       // 120
    lba_format lbaf[64];    // 128
    uint8_t vs[3712];       // 384
} __attribute__((packed));
static_assert(sizeof(identify_ns) == 4096);
static_assert(offsetof(identify_ns, anagrpid) == 92);
static_assert(offsetof(identify_ns, nguid) == 104);
static_assert(offsetof(identify_ns, lbaf) == 128);

namespace nidt {
inline constexpr uint8_t eui64 = 1, nguid = 2, uuid = 3, csi = 4;
}

// ---- Log pages (reference 3.3, 2.6) ----

namespace lid {
inline constexpr uint8_t supported = 0x00, error = 0x01, smart = 0x02, fw_slot = 0x03, changed_ns = 0x04,
                         cmd_effects = 0x05, ana = 0x0C, discovery = 0x70;
}

struct discovery_log_header {
    uint64_t genctr;
    uint64_t numrec;
    uint16_t recfmt;
    uint8_t reserved[1006];
} __attribute__((packed));
static_assert(sizeof(discovery_log_header) == 1024);

struct discovery_log_entry {
    uint8_t trtype;
    uint8_t adrfam;
    uint8_t subtype;
    uint8_t treq;
    uint16_t portid;
    uint16_t cntlid;
    uint16_t asqsz;
    uint16_t eflags;
    uint8_t reserved1[20];
    char trsvcid[32];
    uint8_t reserved2[192];
    char subnqn[256];
    char traddr[256];
    uint8_t tsas[256];
} __attribute__((packed));
static_assert(sizeof(discovery_log_entry) == 1024);
static_assert(offsetof(discovery_log_entry, trsvcid) == 32);
static_assert(offsetof(discovery_log_entry, subnqn) == 256);
static_assert(offsetof(discovery_log_entry, traddr) == 512);

inline constexpr uint8_t trtype_tcp = 3;
inline constexpr uint8_t adrfam_ipv4 = 1, adrfam_ipv6 = 2;
inline constexpr uint8_t subtype_referral = 1, subtype_nvm = 2, subtype_current_discovery = 3;
inline constexpr uint8_t treq_sqflow_disable_supported = 0x04;

// ---- Features (reference 3.4) ----

namespace fid {
inline constexpr uint8_t arbitration = 0x01, power_mgmt = 0x02, temp_threshold = 0x04, error_recovery = 0x05,
                         volatile_wc = 0x06, num_queues = 0x07, irq_coalescing = 0x08, irq_config = 0x09,
                         write_atomicity = 0x0A, async_event = 0x0B, keep_alive = 0x0F, host_id = 0x81;
}

// Async event: type 2 (notice), info, LID (reference 3.5).
namespace aen {
inline constexpr uint32_t cfg_ns_attr = 1u << 8, cfg_ana = 1u << 11, cfg_discovery = 1u << 31;
// Bits 4:0: SMART / Health critical warnings (spare, temperature, reliability, read-only,
// volatile memory backup); mandatory for an I/O controller to accept.
inline constexpr uint32_t cfg_smart_critical = 0x1F;
constexpr uint32_t result(uint8_t type, uint8_t info, uint8_t log) {
    return type | (static_cast<uint32_t>(info) << 8) | (static_cast<uint32_t>(log) << 16);
}
inline constexpr uint32_t ns_changed = result(2, 0x00, lid::changed_ns);
inline constexpr uint32_t ana_changed = result(2, 0x03, lid::ana);
inline constexpr uint32_t discovery_changed = result(2, 0xF0, lid::discovery);
}  // namespace aen

// Copies s into a fixed-width field, space padded (Identify SN/MN/FR).
inline void copy_padded(char* dst, size_t width, std::string_view s) {
    std::memset(dst, ' ', width);
    std::memcpy(dst, s.data(), s.size() < width ? s.size() : width);
}
// Copies s into a fixed-width NUL-padded field (NQNs, discovery strings).
inline void copy_nul_padded(char* dst, size_t width, std::string_view s) {
    std::memset(dst, 0, width);
    std::memcpy(dst, s.data(), s.size() < width - 1 ? s.size() : width - 1);
}
// Reads a NUL-terminated string out of a fixed-width field that may lack the NUL.
inline std::string_view fixed_string(const char* src, size_t width) {
    size_t n = 0;
    while (n < width && src[n] != '\0') ++n;
    return {src, n};
}

}  // namespace ferry::nvme
