#!/usr/bin/env python3
"""Known-answer vectors for tests/unit/dhchap_test.cc, computed from the algorithm
descriptions (NVMe base spec 2.x 8.3.5.5 / 8.13.5, RFC 7919) with Python's standard library
only: nothing here calls ferry. Run it and compare with the constants the test quotes."""
import base64
import hashlib
import hmac
import zlib

HASHES = {1: hashlib.sha256, 2: hashlib.sha384, 3: hashlib.sha512}


def secret_text(hh, key):
    # "DHHC-1:HH:" base64(key || CRC-32 of key, little endian) ":"
    crc = zlib.crc32(key).to_bytes(4, "little")
    return "DHHC-1:%02d:%s:" % (hh, base64.b64encode(key + crc).decode())


def key_bytes(n, start):
    return bytes((start + i) & 0xFF for i in range(n))


print("# secrets (key bytes i+start)")
for hh, n, start in [(0, 32, 0), (1, 32, 0x10), (2, 48, 0x20), (3, 64, 0x30), (1, 64, 0x40)]:
    print("hh=%d len=%d start=0x%02x %s" % (hh, n, start, secret_text(hh, key_bytes(n, start))))


# ---- the protocol's computations (NVMe base spec 2.x 8.3.5.5.x, 8.13.5.x) ----
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:0c9e5f4e-8e33-4c1b-9d2a-6f6c1e2b3a4d"
SUBNQN = "nqn.2026-11.io.ferry:auth"


def transform(hh, key, nqn):
    # Kh = HMAC(H_hh, key, NQN || "NVMe-over-Fabrics"); HH 00: the key as is.
    if hh == 0:
        return key
    return hmac.new(key, nqn.encode() + b"NVMe-over-Fabrics", HASHES[hh]).digest()


def resp(hid, kh, chal, seq, tid, scc, label, nqn1, nqn2):
    msg = chal + seq.to_bytes(4, "little") + tid.to_bytes(2, "little") + bytes([scc])
    msg += label + nqn1.encode() + b"\0" + nqn2.encode()
    return hmac.new(kh, msg, HASHES[hid]).digest()


def augmented(hid, skey, chal):
    # Ca = HMAC(H, H(session key), C)
    return hmac.new(HASHES[hid](skey).digest(), chal, HASHES[hid]).digest()


def ffdhe_prime(bits, x):
    # RFC 7919 appendix A: p = 2^b - 2^{b-64} + {[2^{b-130} e] + X} * 2^64 - 1
    from decimal import Decimal, getcontext
    getcontext().prec = bits // 3 + 50
    e, term, k = Decimal(0), Decimal(1), 0
    while term > Decimal(10) ** -(bits // 3 + 40):
        e += term
        k += 1
        term /= k
    floor_e = int(e * (Decimal(2) ** (bits - 130)))
    return 2**bits - 2**(bits - 64) + (floor_e + x) * 2**64 - 1


hk = key_bytes(32, 0x10)  # the hh=1 secret above
ck = key_bytes(64, 0x30)  # the hh=3 secret above
print("# transform")
print("host hh=1 nqn=HOSTNQN", transform(1, hk, HOSTNQN).hex())
print("ctrl hh=3 nqn=SUBNQN ", transform(3, ck, SUBNQN).hex())
c1 = key_bytes(32, 0xA0)
c2 = key_bytes(64, 0xC0)
print("# responses")
print("R1 sha256 C1=a0.. S1=0x11223344 T_ID=0x0102",
      resp(1, transform(1, hk, HOSTNQN), c1, 0x11223344, 0x0102, 0, b"HostHost", HOSTNQN, SUBNQN).hex())
print("R2 sha512 C2=c0.. S2=0x55667788 T_ID=0x0102",
      resp(3, transform(3, ck, SUBNQN), c2, 0x55667788, 0x0102, 0, b"Controller", SUBNQN, HOSTNQN).hex())
print("# ffdhe2048 with fixed private values")
p = ffdhe_prime(2048, 560316)
print("p starts", hex(p)[:34], "ends", hex(p)[-16:])
xa = int.from_bytes(key_bytes(32, 0x01), "big")  # the controller's
xb = int.from_bytes(key_bytes(32, 0x41), "big")  # the host's
ya, yb = pow(2, xa, p), pow(2, xb, p)
skey = pow(yb, xa, p).to_bytes(256, "big")
print("host public", yb.to_bytes(256, "big").hex())
print("session key sha256", hashlib.sha256(skey).hexdigest())
print("augmented sha256 C1=a0..", augmented(1, skey, c1).hex())
