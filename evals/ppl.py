"""ppl: teacher-forced perplexity over long local text under a policy (StreamingLLM / ALISA's metric).

Sequences of `length` tokens cut from the source text (prose shipped with Python by default) at
deterministic offsets; every token after the first is scored. `prefill` tokens run as a prefill,
the rest as decode steps (so every policy applies); `ppl_decode` covers the tokens predicted by
decode steps only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sparsebench.errors import ConfigError
from sparsebench.evals.base import TASKS, Runtime, Sample, Task, TaskConfig
from sparsebench.evals.teacher_forcing import logits_in_chunks, span_nll, token_stream


@dataclass
class PplConfig(TaskConfig):
    name: str = "ppl"
    source: str = "pydoc"  # pydoc | noise | a directory of .txt files | a .txt file
    length: int = 2048  # tokens per sequence
    num_samples: int = 4
    prefill: int = 256  # tokens run as a prefill (-1: the whole sequence in one prefill)
    chunk: int = 256  # decode tokens per forward call


def sequences(tokenizer, source: str, length: int, n: int, seed: int) -> list[list[int]]:
    """n windows of `length` tokens (a BOS first when the tokenizer has one), spread evenly over the
    text after a seed-dependent offset; the text repeats if it is too short."""
    stream = token_stream(tokenizer, source)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    body = length - len(bos)
    need = n * body
    if len(stream) < need + body:
        stream = stream * (-(-(need + body) // max(len(stream), 1)))
    stride = (len(stream) - body) // n
    offset = (seed * 7919) % max(stride - body, 1) if stride > body else 0
    return [bos + stream[offset + i * stride : offset + i * stride + body] for i in range(n)]


@TASKS.register("ppl")
class Perplexity(Task):
    Config = PplConfig
    primary = "ppl"

    def validate(self, arch, model_cfg) -> None:
        c = self.cfg
        if c.length < 8:
            raise ConfigError("task.length", c.length, "an integer >= 8")
        if c.length > arch.max_positions and not model_cfg.allow_extrapolation:
            raise ConfigError("task.length", c.length, f"<= {arch.max_positions} (or model.allow_extrapolation=true)")
        if c.num_samples < 1:
            raise ConfigError("task.num_samples", c.num_samples, "an integer >= 1")
        if c.chunk < 1:
            raise ConfigError("task.chunk", c.chunk, "an integer >= 1")

    def max_context(self) -> int:
        return self.cfg.length

    def samples(self, tokenizer) -> list[Sample]:
        seqs = sequences(tokenizer, self.cfg.source, self.cfg.length, self.cfg.num_samples, self.seed)
        return [Sample(f"seq{i}", ids, [], {"offset_index": i}) for i, ids in enumerate(seqs)]

    def run_sample(self, sample: Sample, rt: Runtime) -> dict:
        ids = torch.tensor([sample.prompt_ids])
        nll_all, nll_dec, n_all, n_dec = 0.0, 0.0, 0, 0
        prefill = self.cfg.prefill
        for start, logits in logits_in_chunks(rt.model, ids, prefill, self.cfg.chunk):
            nll, _ = span_nll(logits, ids, start)
            nll_all += float(nll.sum())
            n_all += nll.numel()
            if start > 0:  # predicted by decode steps
                nll_dec += float(nll.sum())
                n_dec += nll.numel()
        return {"nll_sum": nll_all, "tokens": n_all, "nll_decode_sum": nll_dec, "decode_tokens": n_dec,
                "ppl": math.exp(nll_all / n_all)}

    def aggregate(self, rows: list[dict]) -> dict:
        tok = sum(r["tokens"] for r in rows)
        dec = sum(r["decode_tokens"] for r in rows)
        out = {"ppl": math.exp(sum(r["nll_sum"] for r in rows) / tok) if tok else float("nan"), "n_samples": len(rows),
               "tokens": tok}
        if dec:
            out["ppl_decode"] = math.exp(sum(r["nll_decode_sum"] for r in rows) / dec)
        return out
