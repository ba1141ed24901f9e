"""A plain subscriber of the `result` topic: prints one line per result (no thz-face import needed).

    python examples/subscribe_results.py [tcp://127.0.0.1:5558] [--count N]

Messages are multipart [b"result", header JSON, payloads...] (see docs/inference.md). The header's
`meta` holds posture, verification and identification; a `reconstruction` payload (64x64
float32, little-endian) is present only when the run was asked to publish reconstructions.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import zmq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5558")
    ap.add_argument("--count", type=int, default=0, help="stop after N results (0 = run until Ctrl-C)")
    args = ap.parse_args()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"result")
    sub.connect(args.endpoint)
    n = 0
    try:
        while args.count == 0 or n < args.count:
            parts = sub.recv_multipart()
            header = json.loads(parts[1])
            meta = header["meta"]
            arrays = {d["name"]: np.frombuffer(p, dtype=d["dtype"]).reshape(d["shape"])
                      for d, p in zip(header["payloads"], parts[2:])}
            claims = " ".join(f"{v['claim']}={'ok' if v['accepted'] else 'NO'}({v['distance']:.3f})"
                              for v in meta["verification"])
            ident = meta.get("identification") or {}
            print(f"frame {header['frame_id']:>6} posture {meta['posture']['name']:<12} "
                  f"p={max(meta['posture']['probabilities'].values()):.2f} {claims or '-'} "
                  f"id={ident.get('identity')} "
                  f"latency={meta['latency_ms'].get('scan_complete_to_published', float('nan')):.1f} ms"
                  + (" +reconstruction" if "reconstruction" in arrays else ""), flush=True)
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        sub.close(0)
        ctx.term()


if __name__ == "__main__":
    main()
