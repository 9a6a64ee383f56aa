"""Connection set-up latency probe, run INSIDE the calibration namespace (spec C.1, C.2).

Executed as ``ip netns exec kpbcal-<pid> python calibrate_probe.py`` with a JSON request on
stdin; prints a JSON answer on stdout. Standard library only (it runs as a plain script).

Request: ``{"listen_port": int, "targets": [[label, ip, port], ...], "rounds": int,
"warmup": int, "cpu": int | null, "src_base": "127.0.x.0"}``.
Answer: ``{"samples": {label: [ns, ...]}, "cpu": int | null}``.

Each sample is one TCP connect() to a target, timed with perf_counter_ns: on loopback the SYN
traverses nat OUTPUT (where kube-proxy's rules DNAT it to the listener on 127.0.0.1), and the
SYN-ACK is processed before connect() returns, so the time covers the first packet's whole
netfilter path. Every connect uses a fresh socket bound to a rotating source address in
127.0.0.0/8 with an ephemeral port, so every sample creates a NEW conntrack entry (the nat table
is consulted only for the first packet of a connection). The client closes with RST
(SO_LINGER 0) so no TIME_WAIT state piles up. Targets are interleaved in a fresh random order
every round so that drift and noise from other processes hit every position alike.
"""

from __future__ import annotations

import gc
import json
import os
import random
import socket
import struct
import sys
import time

_LINGER_RST = struct.pack("ii", 1, 0)


def _sources(base: str, count: int) -> list[str]:
    """``count`` addresses from ``base`` upwards (x.y.z.1 .. x.y.z.254, then the next z)."""
    a, b, c0, _d = (int(x) for x in base.split("."))
    out = []
    for i in range(count):
        c, d = divmod(i, 254)
        c += c0
        out.append(f"{a}.{b + c // 256}.{c % 256}.{d + 1}")
    return out


def probe(req: dict) -> dict:
    cpu = req.get("cpu")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(req["listen_port"])))
    listener.listen(4096)
    targets = [(str(lab), str(ip), int(port)) for lab, ip, port in req["targets"]]
    rounds = int(req["rounds"])
    warmup = int(req.get("warmup", 0))
    sources = _sources(req.get("src_base", "127.0.2.0"), 50000)
    samples: dict[str, list[int]] = {lab: [] for lab, _, _ in targets}
    rng = random.Random(int(req.get("seed", 0)))
    clock = time.perf_counter_ns
    k = 0
    gc.disable()
    try:
        for r in range(warmup + rounds):
            order = targets[:]
            rng.shuffle(order)
            for lab, ip, port in order:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                s.bind((sources[k % len(sources)], 0))
                k += 1
                t0 = clock()
                s.connect((ip, port))
                t1 = clock()
                conn, _ = listener.accept()
                s.close()
                conn.close()
                if r >= warmup:
                    samples[lab].append(t1 - t0)
    finally:
        gc.enable()
        listener.close()
    return {"samples": samples, "cpu": cpu}


def main() -> int:
    req = json.load(sys.stdin)
    json.dump(probe(req), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
