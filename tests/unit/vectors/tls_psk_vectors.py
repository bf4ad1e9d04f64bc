#!/usr/bin/env python3
"""Known-answer vectors for tests/unit/tls_psk_test.cc, computed independently of ferry
with hashlib/hmac/zlib from the algorithm descriptions: RFC 5869 HKDF, RFC 8446
HKDF-Expand-Label, the NVMe/TCP transport spec's retained PSK / PSK digest / TLS PSK
(TP 8011, TP 8018), and libnvme <= 1.15's encoding of the HKDF info (length little endian,
no length prefixes; newer libnvme calls it "compat").  Run: python3 tls_psk_vectors.py"""
import base64, hashlib, hmac, zlib

def hkdf(h, key, info, n):
    prk = hmac.new(b"\0" * h().digest_size, key, h).digest()  # HKDF-Extract(0, key)
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), h).digest()
        out += t
        i += 1
    return out[:n]

def info(form, n, label, ctx):
    label = b"tls13 " + label
    if form == "rfc8446":
        return n.to_bytes(2, "big") + bytes([len(label)]) + label + bytes([len(ctx)]) + ctx
    return n.to_bytes(2, "little") + label + ctx

def parse(text):
    hh = int(text[13:15])
    raw = base64.b64decode(text[16:-1])
    key, crc = raw[:-4], int.from_bytes(raw[-4:], "little")
    assert zlib.crc32(key) == crc
    return hh, key

def interchange(hh, key):
    return "NVMeTLSkey-1:%02d:%s:" % (hh, base64.b64encode(key + zlib.crc32(key).to_bytes(4, "little")).decode())

HOST = "nqn.2014-08.org.nvmexpress:uuid:6e766d66-6c61-4200-8000-000000000001"
SUB = "nqn.2024-01.io.ferry:tls"
LAB = "NVMeTLSkey-1:01:xVClyHM7/Vjg/SafWM8HIejVsU3cf9i//WB1DL4nCJ6PgSKJ:"
K384 = interchange(2, bytes(range(48)))

for text in (LAB, K384):
    hh, key = parse(text)
    h = hashlib.sha256 if hh == 1 else hashlib.sha384
    n = len(key)
    print("key", text)
    print("  configured", key.hex())
    for form in ("compat", "rfc8446"):
        retained = hkdf(h, key, info(form, n, b"HostNQN", HOST.encode()), n)
        digest = base64.b64encode(hmac.new(retained, (HOST + " " + SUB + " NVMe-over-Fabrics").encode(), h).digest()).decode()
        id0 = "NVMe0R%02d %s %s" % (hh, HOST, SUB)
        id1 = "NVMe1R%02d %s %s %s" % (hh, HOST, SUB, digest)
        tls0 = hkdf(h, retained, info(form, n, b"nvme-tls-psk", id0.encode()), n)
        tls1 = hkdf(h, retained, info(form, n, b"nvme-tls-psk", ("%02d %s" % (hh, digest)).encode()), n)
        print("  form", form)
        print("    retained", retained.hex())
        print("    digest", digest)
        print("    tls_psk_v0", tls0.hex())
        print("    tls_psk_v1", tls1.hex())

# Cross-check of this script against libnvme's own test vectors (libnvme test/psk.c,
# test_data_identity and test_data_identity_compat): the identities it expects.
k32 = bytes.fromhex("5512DBB6737D0106F65975B773DFB011FFC344BCF442E2DD6D8BC4870B5D5B03")
k48 = k32 + k32[16:]
expect = {("rfc8446", 32): "iSbjiStwJ/1TrTvDlt2fjFmzvsytOJelidNnA+X5lEU=",
          ("rfc8446", 48): "QhW2+Rp6RzHlNtCslyRxMnwJ11tKKhz8JCAQpQ+XUD8f9td1VeH5h53yz2wKJG1a",
          ("compat", 32): "66GuqV08TsAGII39teWUfwQwizjv06Jy8jOcX3NAAzM=",
          ("compat", 48): "RsKmYJ3nAn1ApjjMloJFbAkLPivONDAX/xW327YBUsn2eGShXSjCZvBaOxscLqmz"}
for (form, n), want in expect.items():
    h = hashlib.sha256 if n == 32 else hashlib.sha384
    key = k32 if n == 32 else k48
    retained = hkdf(h, key, info(form, n, b"HostNQN", b"nqn.psk-test-host"), n)
    got = base64.b64encode(hmac.new(retained, b"nqn.psk-test-host nqn.psk-test-subsys NVMe-over-Fabrics", h).digest()).decode()
    assert got == want, (form, n, got)
print("libnvme test/psk.c identities: match")
