#!/usr/bin/env python3
"""Hostile client for the connection-flood tests: opens COUNT TCP connections to a target from
SOURCE and never finishes the handshake on any of them. Each sends one of
  nothing        (connect and stay silent)
  partial-icreq  (the first 8 bytes of an ICReq PDU header, then silence)
  partial-tls    (a TLS record header announcing a 16 KiB ClientHello, then silence)
and is held for SECONDS. With --reopen a connection the target closes is opened again at once,
so the pressure stays at COUNT for the whole time. Prints one summary line at the end:
  "flood: opened N, closed by the target M, connect errors E, peak open P".
Exit status 0 if it could open at least COUNT connections in total.
"""
import argparse
import errno
import selectors
import socket
import sys
import time

PAYLOAD = {
    "nothing": b"",
    # ICReq: type 0x00, flags 0, hlen 128, pdo 0, plen 128 (little endian); the rest never comes.
    "partial-icreq": bytes([0x00, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00]),
    # TLS record header: handshake (0x16), legacy version 3.1, length 16384; no body.
    "partial-tls": bytes([0x16, 0x03, 0x01, 0x40, 0x00]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--source", default="127.0.0.2", help="local address to connect from")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--send", choices=sorted(PAYLOAD), default="partial-tls")
    ap.add_argument("--reopen", action="store_true", help="reopen connections the target closes")
    ap.add_argument("--max-rate", type=float, default=0, help="reopens per second at most (0: no limit)")
    ap.add_argument("--ready-file", help="touched once COUNT connections were attempted")
    a = ap.parse_args()

    sel = selectors.DefaultSelector()
    opened = closed = errors = peak = 0
    live = 0

    def open_one():
        nonlocal opened, errors, live, peak
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((a.source, 0))
            s.connect((a.addr, a.port))
            if PAYLOAD[a.send]:
                s.sendall(PAYLOAD[a.send])
        except OSError:
            errors += 1
            s.close()
            return
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        opened += 1
        live += 1
        peak = max(peak, live)

    for _ in range(a.count):
        open_one()
    if a.ready_file:
        open(a.ready_file, "w").close()
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError as e:
                data = b"" if e.errno != errno.EAGAIN else None
            if data == b"":  # closed (or reset) by the target
                sel.unregister(s)
                s.close()
                closed += 1
                live -= 1
                if a.reopen and time.monotonic() < end:
                    if a.max_rate:
                        time.sleep(1.0 / a.max_rate)
                    open_one()
    print(f"flood: opened {opened}, closed by the target {closed}, connect errors {errors}, peak open {peak}")
    return 0 if opened >= a.count else 1


if __name__ == "__main__":
    sys.exit(main())
