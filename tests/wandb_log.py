"""Read an offline W&B run's transaction log (run-*.wandb) without a server.

Format: a 7-byte header (':W&B', 0xBEE1, version), then LevelDB-log framing in 32 KiB blocks:
records of [crc32c (4) | length (2, LE) | type (1: full, 2: first, 3: middle, 4: last)] + payload,
each payload a `wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768


def records(path: str | Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, frag = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # block trailer padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        frag = payload if kind in (1, 2) else frag + payload
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(frag)
            yield rec


def summary(path: str | Path) -> dict:
    out: dict = {}
    for rec in records(path):
        if rec.WhichOneof("record_type") == "summary":
            for item in rec.summary.update:
                key = item.key or "/".join(item.nested_key)
                out[key] = json.loads(item.value_json)
    return out
