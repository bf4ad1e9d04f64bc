#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus: tests/fuzz/seeds/pdu/ (pdu_fuzz.cc) and seeds/io/ (io_fuzz.cc).

Each seed is what the fuzz target reads: a flag byte, a split byte, then host PDUs. The seeds
are valid command streams (every command kind the target parses), so the fuzzer starts from
inputs that reach deep into the target and mutates from there. The files are committed; run
this again after changing the input format:  tests/fuzz/make_seeds.py
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SUBNQN = b"nqn.2026-11.io.ferry:fuzz"
HOSTNQN = b"nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555"
PSDT_SGL = 0x40  # SQE byte 1: data by SGL, as every fabrics host sends (anything else is refused)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def pdu(ptype, header_rest, data=b"", hd=False, dd=False, flags=0):
    """A PDU: 8-byte common header + header_rest (+HDGST) + data (+DDGST)."""
    hlen = 8 + len(header_rest)
    hdl = 4 if hd else 0
    ddl = 4 if dd and data else 0
    flags |= (1 if hd else 0) | (2 if ddl else 0)
    pdo = hlen + hdl if data else 0
    plen = hlen + hdl + len(data) + ddl
    head = struct.pack("<BBBBI", ptype, flags, hlen, pdo, plen) + header_rest
    out = head + (struct.pack("<I", crc32c(head)) if hd else b"")
    out += data
    if ddl:
        out += struct.pack("<I", crc32c(data))
    return out


def sqe(opcode, cid, nsid=0, cdw10=0, cdw11=0, cdw12=0, cdw13=0, cdw14=0, cdw15=0, sgl=None):
    """64-byte SQE; sgl = (address, length, type)."""
    addr, length, stype = sgl or (0, 0, 0)
    return (struct.pack("<BBHIIIQ", opcode, PSDT_SGL, cid, nsid, 0, 0, 0)
            + struct.pack("<QI3xB", addr, length, stype)
            + struct.pack("<IIIIII", cdw10, cdw11, cdw12, cdw13, cdw14, cdw15))


def capsule(cmd, data=b"", hd=False, dd=False):
    if data:  # in-capsule: SGL data block, offset 0
        cmd = cmd[:24] + struct.pack("<QI3xB", 0, len(data), 0x01) + cmd[40:]
    return pdu(0x04, cmd, data, hd, dd)


def ic_req(hd=False, dd=False):
    return struct.pack("<BBBBIHBBI", 0x00, 0, 128, 0, 128, 0, 0, (1 if hd else 0) | (2 if dd else 0), 0) + bytes(112)


def connect(qid, cntlid=0xFFFF, sqsize=31, kato=5000, hd=False, dd=False):
    data = bytes([1] + [0] * 15) + struct.pack("<H", cntlid) + bytes(238)
    data += SUBNQN.ljust(256, b"\0") + HOSTNQN.ljust(256, b"\0") + bytes(256)
    cmd = struct.pack("<BBHB19x", 0x7F, PSDT_SGL, 1, 0x01) + bytes(16)
    cmd += struct.pack("<HHHBBI12x", 0, qid, sqsize, 0, 0, kato)
    return capsule(cmd, data, hd, dd)


def property_get(cid, offset, eight=False, hd=False):
    cmd = struct.pack("<BBHB35xB3xIQ8x", 0x7F, PSDT_SGL, cid, 0x04, 1 if eight else 0, offset, 0)
    return capsule(cmd, b"", hd)


def h2c_data(cccid, ttag, offset, data, last, hd=False, dd=False):
    rest = struct.pack("<HHIII", cccid, ttag, offset, len(data), 0)
    return pdu(0x06, rest, data, hd, dd, flags=0x04 if last else 0)


def r2t_sgl(length):
    return (0, length, 0x5A)


def write(path, flags, split, stream):
    with open(path, "wb") as f:
        f.write(bytes([flags, split]) + stream)


def main():
    pdu_dir = os.path.join(HERE, "seeds", "pdu")
    io_dir = os.path.join(HERE, "seeds", "io")
    os.makedirs(pdu_dir, exist_ok=True)
    os.makedirs(io_dir, exist_ok=True)

    # pdu_fuzz: flags bit 0 ICReq prefix, bit 1 admin Connect prefix, bits 2-3 digests.
    write(os.path.join(pdu_dir, "icreq-connect"), 0, 255, ic_req() + connect(0))
    write(os.path.join(pdu_dir, "icreq-connect-digests"), 0, 64,
          ic_req(True, True) + connect(0, hd=True, dd=True) + property_get(2, 0x00, True, hd=True))
    write(os.path.join(pdu_dir, "after-connect-props"), 3, 255,
          property_get(2, 0x00, True) + property_get(3, 0x08) + property_get(4, 0x1C))
    write(os.path.join(pdu_dir, "after-icreq-io-connect"), 1, 17, connect(1, cntlid=1))
    write(os.path.join(pdu_dir, "h2c-term-req"), 1, 255,
          pdu(0x02, struct.pack("<HI10x", 1, 0)))

    # io_fuzz: flag bit 0 = the I/O queue (else admin); 4 KiB blocks on NSID 2, 512 B on NSID 1.
    block = bytes(range(256)) * 16
    write(os.path.join(io_dir, "write-read-incapsule"), 1, 255,
          capsule(sqe(0x01, 10, nsid=2, cdw10=0, cdw12=0), block)
          + capsule(sqe(0x02, 11, nsid=2, cdw10=0, cdw12=0, sgl=r2t_sgl(4096))))
    big = bytes((i * 7) & 0xFF for i in range(65536))
    write(os.path.join(io_dir, "write-r2t-64k"), 1, 255,
          capsule(sqe(0x01, 12, nsid=2, cdw10=8, cdw12=15, sgl=r2t_sgl(65536)))
          + h2c_data(12, 0, 0, big[:32768], False) + h2c_data(12, 0, 32768, big[32768:], True)
          + capsule(sqe(0x02, 13, nsid=2, cdw10=8, cdw12=15, sgl=r2t_sgl(65536))))
    write(os.path.join(io_dir, "write-digests"), 1 | 4 | 8, 100,
          capsule(sqe(0x01, 14, nsid=1, cdw10=3, cdw12=7), block, True, True)
          + capsule(sqe(0x02, 15, nsid=1, cdw10=3, cdw12=7, sgl=r2t_sgl(4096)), b"", True, True))
    ranges = struct.pack("<IIQ", 0, 8, 0) + struct.pack("<IIQ", 0, 4, 64)
    write(os.path.join(io_dir, "dsm-zeroes-flush-compare"), 1, 255,
          capsule(sqe(0x09, 20, nsid=2, cdw10=1, cdw11=4), ranges)
          + capsule(sqe(0x08, 21, nsid=1, cdw10=16, cdw12=7))
          + capsule(sqe(0x00, 22, nsid=2))
          + capsule(sqe(0x05, 23, nsid=1, cdw10=0, cdw12=0), bytes(512))
          + capsule(sqe(0x02, 24, nsid=1, cdw10=2032, cdw12=15, sgl=r2t_sgl(8192))))
    write(os.path.join(io_dir, "disconnect"), 1, 255, capsule(struct.pack("<BBHB", 0x7F, PSDT_SGL, 30, 0x08) + bytes(59)))

    identify = b"".join(capsule(sqe(0x06, 40 + i, nsid=nsid, cdw10=cns, sgl=r2t_sgl(4096)))
                        for i, (cns, nsid) in enumerate([(1, 0), (0, 1), (0, 2), (2, 0), (3, 1), (0x05, 1), (0x06, 0),
                                                         (0x08, 2)]))
    write(os.path.join(io_dir, "admin-identify"), 0, 255, identify)
    logs = b"".join(capsule(sqe(0x02, 60 + i, nsid=0xFFFFFFFF, cdw10=lid | ((numd - 1) << 16), cdw12=off,
                                sgl=r2t_sgl(numd * 4)))
                    for i, (lid, numd, off) in enumerate([(0x00, 256, 0), (0x01, 16, 0), (0x02, 128, 0),
                                                          (0x03, 128, 0), (0x04, 1024, 0), (0x05, 1024, 0),
                                                          (0x02, 32, 64)]))
    write(os.path.join(io_dir, "admin-log-pages"), 0, 255, logs)
    feats = (capsule(sqe(0x09, 80, cdw10=0x0B, cdw11=0x100))
             + capsule(sqe(0x09, 81, cdw10=0x07, cdw11=0x00030003))
             + capsule(sqe(0x0A, 82, cdw10=0x07))
             + capsule(sqe(0x0A, 83, cdw10=0x06 | (3 << 8)))
             + capsule(sqe(0x0A, 84, cdw10=0x81, cdw11=1, sgl=r2t_sgl(16)))
             + capsule(sqe(0x0C, 85))
             + capsule(sqe(0x18, 86))
             + capsule(sqe(0x08, 87, cdw10=1 | (5 << 16))))
    write(os.path.join(io_dir, "admin-features-aer-keepalive"), 0, 255, feats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
