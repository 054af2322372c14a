"""DuoAttention's gate calibration (POLICIES.md, streaming_heads) for any HF causal LM whose attention
runs through transformers' `AttentionInterface` (Llama, Mistral, Qwen2, ... and the testbed).

One trainable gate alpha per (layer, KV head), initialised to 1, the model frozen. Per layer the
attention output (before o_proj) of every query head is  alpha * full + (1 - alpha) * streaming,
the gate shared by the KV head's query group; streaming = causal attention to the first `sink`
keys and the last `recent` keys (self included), token-exact. Loss = mean squared distance between
the final hidden states (after the final norm) of the frozen full model and of the gated model at
the supervised positions, plus `l1` * mean |alpha|. AdamW (no weight decay), lr warm-up from
0.1 * lr over the first 20 % of steps and decay back over the last 20 % (DuoAttention's schedule),
gates clamped to [0, 1] after each step.

Variants (recorded in the pattern's config.json):
- `full_source: teacher` (DuoAttention's code: the `full` term is the frozen model's own attention
  output at that layer, so gradients reach the gates through the streaming path only) or `student`
  (full attention recomputed from the gated model's hidden states);
- `supervise: answers` (the passkey tokens, POLICIES.md) or `qa_tail` (every token after the
  context: questions and answers, DuoAttention's labels).

Data: DuoAttention's synthetic multi-passkey retrieval. `passkeys` passkeys of `passkey_words` words
drawn from the NATO alphabet, inserted (in DuoAttention's wording, typo included) at sorted depths
drawn from linspace(0.05, 0.95, 1000) of a haystack whose length is drawn from
linspace(context_min, context_max, n_lengths); then one question per passkey. Deviation: the
haystack is English prose shipped with Python (`pydoc`) instead of BookSum.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sparsebench.errors import ConfigError

ATTN_NAME = "sparsebench_duo_calibration"
NATO = ["alfa", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo",
        "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor",
        "whiskey", "xray", "yankee", "zulu"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
            "eighteenth", "nineteenth", "twentieth"]
BOOK_PREFIX = "This is a very long story book: <book> "
BOOK_SUFFIX = " </book>.\n\n"
NEEDLE = "\n\nRemeber this sequence of words, it's the {ordinal} passkey to the vault: {passkey}\n\n"
QUESTION = "Based on the content of the book, what is the {ordinal} passkey to the vault?\nPasskey: "


@dataclass
class CalibrationConfig:
    model: str = "asset:testbed"  # a local checkpoint directory, asset:NAME, or a hub id (downloads if not cached)
    out_dir: str = "asset:testbed/head_pattern"
    sink: int = 64
    recent: int = 256
    steps: int = 2000
    lr: float = 0.02
    l1: float = 0.05
    context_min: int = 1000
    context_max: int = 4000
    n_lengths: int = 50
    passkeys: int = 10
    passkey_words: int = 32
    haystack: str = "pydoc"
    supervise: str = "answers"  # answers | qa_tail
    full_source: str = "teacher"  # teacher | student
    seed: int = 42
    device: str = "auto"
    dtype: str = "auto"
    save_every: int = 50
    trust_remote_code: bool = False

    def check(self, max_positions: int | None = None) -> None:
        """Bad input, before anything loads."""
        if self.supervise not in ("answers", "qa_tail"):
            raise ConfigError("calibrate.supervise", self.supervise, "answers or qa_tail")
        if self.full_source not in ("teacher", "student"):
            raise ConfigError("calibrate.full_source", self.full_source, "teacher or student")
        if not 1 <= self.passkeys <= len(ORDINALS):
            raise ConfigError("calibrate.passkeys", self.passkeys, f"an integer in [1, {len(ORDINALS)}]")
        for key in ("sink", "recent", "steps", "passkey_words", "n_lengths", "context_min", "save_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"calibrate.{key}", getattr(self, key), "a positive integer")
        if self.context_max < self.context_min:
            raise ConfigError("calibrate.context_max", self.context_max, f">= calibrate.context_min ({self.context_min})")
        if self.lr <= 0 or self.l1 < 0:
            raise ConfigError("calibrate.lr" if self.lr <= 0 else "calibrate.l1", self.lr if self.lr <= 0 else self.l1,
                              "lr > 0 and l1 >= 0")
        if max_positions is not None and self.context_max + self.tail_budget() > max_positions:
            raise ConfigError("calibrate.context_max", self.context_max,
                              f"at most {max_positions - self.tail_budget()} (the model has {max_positions} positions "
                              f"and the {self.passkeys} questions take about {self.tail_budget()} tokens)")

    def tail_budget(self) -> int:
        return self.passkeys * (self.passkey_words * 2 + 24) + 32


# ---------------------------------------------------------------------------------------------- data
@dataclass
class CalibrationSample:
    ids: list[int]
    supervised: list[int]  # positions whose final hidden states enter the loss
    context_len: int


def make_sample(tokenizer, cfg: CalibrationConfig, step: int) -> CalibrationSample:
    """The multi-passkey sample of `step` (a pure function of (seed, step, tokenizer))."""
    from sparsebench.evals.haystack import haystack_ids

    rng = random.Random(cfg.seed * 1_000_003 + step)
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    lengths = np.linspace(cfg.context_min, cfg.context_max, cfg.n_lengths).round().astype(int)
    n = int(lengths[rng.randrange(len(lengths))])
    offset = rng.randrange(0, 20_000)
    hay = haystack_ids(tokenizer, cfg.haystack, offset + n)[offset : offset + n]
    ratios = sorted(rng.sample(list(np.linspace(0.05, 0.95, 1000)), cfg.passkeys))
    keys = [" ".join(rng.choice(NATO) for _ in range(cfg.passkey_words)) for _ in range(cfg.passkeys)]
    body, prev = [], 0
    for i, (r, key) in enumerate(zip(ratios, keys)):
        at = int(n * r)
        body += hay[prev:at] + enc(NEEDLE.format(ordinal=ORDINALS[i], passkey=key))
        prev = at
    body += hay[prev:]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = bos + enc(BOOK_PREFIX) + body + enc(BOOK_SUFFIX)
    supervised = []
    for i, key in enumerate(keys):
        q, a = enc(QUESTION.format(ordinal=ORDINALS[i])), enc(key + "\n\n")
        if cfg.supervise == "qa_tail":
            supervised += range(len(ids), len(ids) + len(q) + len(a))
        else:
            supervised += range(len(ids) + len(q), len(ids) + len(q) + len(a))
        ids += q + a
    return CalibrationSample(ids, supervised, n)


# ---------------------------------------------------------------------------------------------- gated attention
def streaming_mask(n: int, sink: int, recent: int, device) -> torch.Tensor:
    """[n, n] bool: causal and (key < sink or key > query - recent): `recent` keys including self."""
    from sparsebench.kernels.reference import pattern_mask

    return pattern_mask(0, n, n, sink, recent, device)


def streaming_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sink: int, recent: int,
                        scale: float, block: int = 64) -> torch.Tensor:
    """Sink + recent attention in O(L * (sink + recent + block)) memory and time: q [B, Hq, L, D],
    k / v [B, Hkv, L, D] -> [B, Hq, L, D], equal to dense attention under `streaming_mask`. Queries go in
    blocks of `block`; block b sees the sink keys and the `recent + block` keys ending at its last query
    (window keys below `sink` are masked so that no key counts twice). GQA without expanding K / V: a KV
    head's query group is stacked along the rows."""
    B, Hq, L, D = q.shape
    if L <= sink + recent + block:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=streaming_mask(L, sink, recent, q.device),
                                              scale=scale, enable_gqa=True)
    Hkv = k.shape[1]
    G, W, dev = Hq // Hkv, block, q.device
    nb = -(-L // W)
    S = sink + recent + W
    qb = F.pad(q, (0, 0, 0, nb * W - L)).view(B, Hkv, G, nb, W, D).permute(0, 3, 1, 2, 4, 5).reshape(B, nb, Hkv, G * W, D)
    idx = (torch.arange(nb, device=dev) * W)[:, None] + torch.arange(recent + W, device=dev)[None]  # left-padded pos
    pad = lambda x: F.pad(x, (0, 0, recent, nb * W - L))  # noqa: E731  (window position = idx - recent)
    keys = torch.cat([k[:, :, :sink].unsqueeze(1).expand(B, nb, Hkv, sink, D), pad(k)[:, :, idx].transpose(1, 2)], 3)
    vals = torch.cat([v[:, :, :sink].unsqueeze(1).expand(B, nb, Hkv, sink, D), pad(v)[:, :, idx].transpose(1, 2)], 3)
    pos_q = torch.arange(nb * W, device=dev).view(nb, W, 1)
    pos_w = (idx - recent).view(nb, 1, recent + W)
    ok_sink = torch.arange(sink, device=dev).view(1, 1, sink) <= pos_q
    ok_win = (pos_w <= pos_q) & (pos_w > pos_q - recent) & (pos_w >= sink)
    mask = torch.cat([ok_sink.expand(nb, W, sink), ok_win], -1)  # [nb, W, S]
    mask = mask.view(nb, 1, 1, W, S).expand(nb, 1, G, W, S).reshape(nb, 1, G * W, S)
    p = ((qb @ keys.transpose(-1, -2)) * scale).masked_fill(~mask, float("-inf")).softmax(-1)
    out = (p.to(vals.dtype) @ vals).view(B, nb, Hkv, G, W, D).permute(0, 2, 3, 1, 4, 5)
    return out.reshape(B, Hq, nb * W, D)[:, :, :L]


class _Gating:
    """What the registered attention function reads while a calibration forward runs."""

    def __init__(self, gates: torch.nn.Parameter, cfg: CalibrationConfig):
        self.gates, self.cfg = gates, cfg
        self.mode = "teacher"
        self.full: dict[int, torch.Tensor] = {}


_ACTIVE: _Gating | None = None


def gated_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """query [B, Hq, L, D], key / value [B, Hkv, L, D] -> ([B, L, Hq, D], None). `teacher` mode: full causal
    attention (kept for the student when full_source=teacher); `student`: alpha * full + (1 - alpha) * streaming."""
    st = _ACTIVE
    if st is None:
        raise RuntimeError("the calibration attention ran outside sparsebench.calibrate")
    if query.shape[2] != key.shape[2]:
        raise RuntimeError("calibration runs whole sequences without a KV cache (use_cache=False)")
    scale = scaling if scaling is not None else module.scaling
    layer = module.layer_idx
    full = None
    if st.mode == "teacher" or st.cfg.full_source == "student":
        full = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scale, enable_gqa=True)
    if st.mode == "teacher":
        if st.cfg.full_source == "teacher":
            st.full[layer] = full.detach()
        return full.transpose(1, 2).contiguous(), None
    if full is None:
        full = st.full[layer]
    stream = streaming_attention(query, key, value, st.cfg.sink, st.cfg.recent, scale)
    group = query.shape[1] // key.shape[1]
    a = st.gates[layer].clamp(0, 1).repeat_interleave(group).view(1, -1, 1, 1).to(query.dtype)
    out = a * full + (1 - a) * stream
    return out.transpose(1, 2).contiguous(), None


def _no_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None, attention_mask=None,
             **kwargs):
    if attention_mask is not None and not bool(attention_mask.all()):
        raise RuntimeError("calibration runs unpadded single sequences")
    return None


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_NAME, gated_attention)
    AttentionMaskInterface.register(ATTN_NAME, _no_mask)


def lr_factor(step: int, steps: int) -> float:
    """DuoAttention's schedule: linear warm-up over the first 20 % and decay over the last 20 %, floor 0.1."""
    span = max(steps // 5, 1)
    return min(1.0, max((step + 1) / span, 0.1), max((steps - step) / span, 0.1))


# ---------------------------------------------------------------------------------------------- the loop
class Calibrator:
    """Gates for `model` (frozen). `loss(sample)` runs the teacher then the gated student on one sample."""

    def __init__(self, model, cfg: CalibrationConfig):
        register()
        self.model, self.cfg = model, cfg
        c = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.n_layers, self.n_kv = c.num_hidden_layers, c.num_key_value_heads or c.num_attention_heads
        dev = next(model.parameters()).device
        self.gates = torch.nn.Parameter(torch.ones(self.n_layers, self.n_kv, device=dev, dtype=torch.float32))
        for p in model.parameters():
            p.requires_grad_(False)
        self.state = _Gating(self.gates, cfg)

    def _hidden(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.base_model(input_ids=ids, use_cache=False).last_hidden_state[0]

    def loss(self, sample: CalibrationSample) -> tuple[torch.Tensor, float]:
        global _ACTIVE
        ids = torch.tensor([sample.ids], device=self.gates.device)
        pos = torch.tensor(sample.supervised, device=self.gates.device)
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation(ATTN_NAME)
        _ACTIVE = self.state
        try:
            self.state.mode = "teacher"
            with torch.no_grad():
                target = self._hidden(ids)[pos].float()
            self.state.mode = "student"
            got = self._hidden(ids)[pos].float()
        finally:
            _ACTIVE = None
            self.state.full.clear()
            self.model.set_attn_implementation(previous)
        distill = ((got - target) ** 2).mean(-1).mean()
        return distill + self.cfg.l1 * self.gates.abs().mean(), distill.item()

    def fit(self, tokenizer, out_dir: Path | None = None, log=print) -> dict:
        from tqdm.auto import tqdm

        cfg = self.cfg
        opt = torch.optim.AdamW([self.gates], lr=cfg.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.steps))
        history = []
        t0 = time.time()
        bar = tqdm(range(cfg.steps), desc="calibrate", unit="step")
        for step in bar:
            sample = make_sample(tokenizer, cfg, step)
            loss, distill = self.loss(sample)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                self.gates.clamp_(0.0, 1.0)
            row = {"step": step + 1, "loss": loss.item(), "distill": distill, "mean_gate": self.gates.detach().mean().item(),
                   "context": sample.context_len, "lr": opt.param_groups[0]["lr"]}
            history.append(row)
            bar.set_postfix(distill=f"{distill:.4f}", gate=f"{row['mean_gate']:.3f}")
            if out_dir is not None and ((step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps):
                self.save(out_dir, history, time.time() - t0)
        return {"history": history, "seconds": time.time() - t0}

    def save(self, out_dir: Path, history: list[dict], seconds: float) -> Path:
        from sparsebench.policies.head_pattern import save_gates

        g = self.gates.detach().float().cpu().numpy()
        meta = {**asdict(self.cfg), "sink_size": self.cfg.sink, "recent_size": self.cfg.recent,
                "steps_done": history[-1]["step"] if history else 0, "seconds": round(seconds, 1),
                "final_distill": history[-1]["distill"] if history else None,
                "gate_summary": gate_summary(g), "streaming_mask": "token"}
        path = save_gates(out_dir, g, meta)
        with open(Path(out_dir) / "calibration_log.jsonl", "w") as f:
            for r in history:
                f.write(json.dumps(r) + "\n")
        return path


def gate_summary(g: np.ndarray) -> dict:
    """Distribution of calibrated gates: quantiles, share near 0 / 1, per-layer means."""
    flat = np.clip(g.reshape(-1), 0, 1)
    return {"min": float(flat.min()), "q25": float(np.quantile(flat, 0.25)), "median": float(np.median(flat)),
            "q75": float(np.quantile(flat, 0.75)), "max": float(flat.max()),
            "share_below_0.1": float((flat < 0.1).mean()), "share_above_0.9": float((flat > 0.9).mean()),
            "layer_means": [round(float(x), 4) for x in np.clip(g, 0, 1).mean(1)]}


def format_gates(g: np.ndarray, sparsity: float = 0.5) -> str:
    """A layers x KV heads text table of the gates, retrieval heads at `sparsity` marked with *."""
    from sparsebench.policies.head_pattern import binarize

    keep = binarize(g, sparsity)
    lines = ["layer | " + " ".join(f"kv{h:<5d}" for h in range(g.shape[1]))]
    for i, row in enumerate(g):
        lines.append(f"{i:5d} | " + " ".join(f"{v:5.3f}{'*' if k else ' '}" for v, k in zip(row, keep[i])))
    lines.append(f"(* = retrieval head at sparsity {sparsity})")
    return "\n".join(lines)


def run(cfg: CalibrationConfig) -> Path:
    """Load the model named by cfg.model, calibrate, write the pattern directory; returns the tsv path."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from sparsebench.models import resolve_asset, resolve_device, resolve_dtype

    src = resolve_asset(cfg.model)
    if Path(src).expanduser().exists():
        src = str(Path(src).expanduser())
        if not (Path(src) / "config.json").is_file():
            raise ConfigError("calibrate.model", cfg.model, "a checkpoint directory holding config.json, or a hub id")
    hf = AutoConfig.from_pretrained(src, trust_remote_code=cfg.trust_remote_code)
    text = hf.get_text_config() if hasattr(hf, "get_text_config") else hf
    cfg.check(getattr(text, "max_position_embeddings", None))
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, use_safetensors=True,
                                                 trust_remote_code=cfg.trust_remote_code).to(device).eval()
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=cfg.trust_remote_code)
    out = Path(resolve_asset(cfg.out_dir)).expanduser()
    cal = Calibrator(model, cfg)
    print(f"[calibrate] {src}: {cal.n_layers} layers x {cal.n_kv} KV heads, {cfg.steps} steps, contexts "
          f"{cfg.context_min}-{cfg.context_max}, sink {cfg.sink} + recent {cfg.recent}, on {device}", flush=True)
    res = cal.fit(tok, out)
    g = cal.gates.detach().float().cpu().numpy()
    print(format_gates(g))
    s = gate_summary(g)
    print(f"[calibrate] {res['seconds'] / 60:.1f} min; gates: median {s['median']:.3f}, "
          f"{100 * s['share_below_0.1']:.0f}% < 0.1, {100 * s['share_above_0.9']:.0f}% > 0.9 -> {out}")
    return out / "full_attention_heads.tsv"
