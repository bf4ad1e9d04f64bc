#!/usr/bin/env python3
"""Writes the test keys of tests/unit/test_keys.hh and tests/integration/keys.sh, from the
formats nvme-cli prints (not from ferry's code):
  DH-HMAC-CHAP: "DHHC-1:HH:" + base64(key || crc32(key) little endian) + ":"  (HH 00..03;
                key 32, 48 or 64 bytes)
  TLS PSK:      "NVMeTLSkey-1:HH:" + base64(key || crc32(key) little endian) + ":"  (HH 01: 32
                bytes, 02: 48 bytes)
The key bytes are a fixed pattern (seed) so the output never changes."""
import base64, struct, sys, zlib

def body(key):
    return base64.b64encode(key + struct.pack('<I', zlib.crc32(key))).decode()

def pattern(n, seed):
    return bytes((i * 7 + seed * 13 + n) & 255 for i in range(n))

def dhchap(hh, n, seed):
    return 'DHHC-1:%02x:%s:' % (hh, body(pattern(n, seed)))

def psk(hh, n, seed):
    return 'NVMeTLSkey-1:%02x:%s:' % (hh, body(pattern(n, seed)))

if __name__ == '__main__':
    keys = {
        'dhchap_00_32': dhchap(0, 32, 0), 'dhchap_01_32': dhchap(1, 32, 1),
        'dhchap_02_48': dhchap(2, 48, 2), 'dhchap_03_64': dhchap(3, 64, 3),
        'dhchap_01_32_b': dhchap(1, 32, 9), 'dhchap_03_64_b': dhchap(3, 64, 10),
        'psk_01_32': psk(1, 32, 4), 'psk_02_48': psk(2, 48, 5), 'psk_01_32_b': psk(1, 32, 11),
    }
    for name in sys.argv[1:] or keys:
        print(name, keys[name])
