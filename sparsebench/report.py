"""`sparsebench-report [OUTPUT_DIR]`: one table of every record under OUTPUT_DIR/runs.

Accuracy next to what it cost: score, decode density, KV bytes held and read per step,
time per sample. Reads only the records (result.json), so it works on any sweep, finished or not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_records(output_dir: str | Path) -> list[dict]:
    out = []
    for p in sorted(Path(output_dir).glob("runs/*/*/*/result.json")):
        try:
            out.append(json.loads(p.read_text()))
        except json.JSONDecodeError:
            continue
    return out


def table(records: list[dict]) -> str:
    head = ("task", "model", "policy", "backend", "status", "metric", "value", "density", "KV held MB",
            "KV read/step MB", "s/sample")
    lines = [head]
    def primary(r):
        m = r.get("metrics") or {}
        key = m.get("primary", "score")
        return key, m.get(key)

    for r in sorted(records, key=lambda r: (r["config"]["task"]["name"], r["config"]["model"]["name"],
                                              r["config"]["policy"]["name"])):
        c, m, kv, t = r["config"], r.get("metrics") or {}, r.get("kv") or {}, r.get("timings") or {}
        sps = t.get("samples_per_s")
        key, value = primary(r)
        lines.append((
            c["task"]["name"], c["model"]["name"], c["policy"]["name"], r.get("backend_resolved") or c["backend"]["name"],
            r.get("status", "?"), key,
            f"{value:.4g}" if isinstance(value, (int, float)) else "-",
            f"{kv['density_decode']:.3f}" if "density_decode" in kv else "-",
            f"{kv['kv_bytes_held_peak'] / 2**20:.2f}" if "kv_bytes_held_peak" in kv else "-",
            f"{kv['kv_bytes_read_per_decode_step'] / 2**20:.3f}" if "kv_bytes_read_per_decode_step" in kv else "-",
            f"{1 / sps:.2f}" if sps else "-",
        ))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    fmt = lambda row: "| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, lines[1:])])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output_dir", nargs="?", default="outputs")
    args = ap.parse_args(argv)
    recs = load_records(args.output_dir)
    if not recs:
        raise SystemExit(f"no records under {args.output_dir}/runs")
    print(table(recs))


if __name__ == "__main__":
    main()
