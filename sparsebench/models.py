"""Models: architecture facts before any weight loads, then loading (hub id, local path or random weights).

- `model_arch(cfg)` reads what validation needs without weights: a local `config.json`
  when `model.path` is given, else the architecture the model's config file writes out.
- `load_model(cfg)` returns (model, tokenizer). Weights: `pretrained` from `model.path`
  (offline) or `model.hub_id` (the only route that may download, because the user asked for
  it; `HF_HUB_OFFLINE=1` is honoured), or `random` (built from the written-out architecture,
  seeded: latency work needs no download). safetensors only; `trust_remote_code` is off
  unless the config turns it on.
- Tokenizers: the checkpoint's own, or `byte`: sparsebench's byte-level tokenizer, built in
  code (no file, no download) for random-weight models.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sparsebench.arch import ModelArch
from sparsebench.errors import ConfigError

BYTE_SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"]


def byte_tokenizer():
    """A byte-level tokenizer: one token per byte (ids 0-255), then <s> </s> <pad> <unk>; BOS first, as Llama's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel maps byte b to a printable character; order the vocab by byte value
    byte_to_char = _bytes_to_unicode()
    vocab = {byte_to_char[b]: b for b in range(256)}
    assert set(vocab) == set(alphabet)
    for i, s in enumerate(BYTE_SPECIALS):
        vocab[s] = 256 + i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(BYTE_SPECIALS)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 256)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="left")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the one ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


ASSETS = Path(__file__).resolve().parent / "assets"


def resolve_asset(path: str | None) -> str | None:
    """`asset:NAME` -> the directory sparsebench ships under sparsebench/assets/NAME."""
    if path and path.startswith("asset:"):
        return str(ASSETS / path[len("asset:"):])
    return path


def _arch_dict(cfg) -> dict[str, Any]:
    from omegaconf import OmegaConf

    a = cfg.architecture
    a = OmegaConf.to_container(a, resolve=True) if OmegaConf.is_config(a) else dict(a)
    d = {k: v for k, v in a.items() if k != "extra" and v is not None}
    d.update(a.get("extra") or {})
    return d


def hf_config(cfg):
    """A transformers config from the written-out architecture."""
    from transformers import CONFIG_MAPPING

    d = _arch_dict(cfg)
    model_type = d.pop("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError("model.architecture.model_type", model_type, "a transformers model type, e.g. llama")
    return CONFIG_MAPPING[model_type](**d)


def model_path(cfg) -> str | None:
    """`model.path` with `asset:NAME` (a model shipped in sparsebench/assets) and `~` resolved."""
    p = resolve_asset(cfg.path)
    return None if p is None else str(Path(p).expanduser())


def check_model(cfg) -> None:
    """Bad-input checks on the model config (no loading)."""
    if cfg.weights not in ("pretrained", "random"):
        raise ConfigError("model.weights", cfg.weights, "pretrained or random")
    if cfg.path is not None:
        p = Path(model_path(cfg))
        if not (p.is_dir() and (p / "config.json").is_file()):
            raise ConfigError("model.path", cfg.path, "an existing directory holding config.json and the weights")
    elif cfg.weights == "pretrained" and not cfg.hub_id:
        raise ConfigError("model.path", None, f"a local checkpoint directory or model.hub_id (or model.weights=random) for model {cfg.name}")
    if cfg.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ConfigError("model.dtype", cfg.dtype, "auto, float32, bfloat16 or float16")


def model_arch(cfg) -> ModelArch:
    """Architecture without weights: a local config.json, else the config's written-out architecture."""
    check_model(cfg)
    pattern = resolve_asset(cfg.get("head_pattern"))
    if cfg.path is not None:
        raw = json.loads((Path(model_path(cfg)) / "config.json").read_text())
        text = raw.get("text_config", raw)
        fields = SimpleNamespace(**{"head_dim": None, "num_key_value_heads": None, **text})
        arch = ModelArch.from_hf_config(fields, cfg.name, pattern)
    else:
        a = _arch_dict(cfg)
        arch = ModelArch(
            name=cfg.name,
            n_layers=a["num_hidden_layers"],
            n_heads=a["num_attention_heads"],
            n_kv_heads=a.get("num_key_value_heads") or a["num_attention_heads"],
            head_dim=a.get("head_dim") or a["hidden_size"] // a["num_attention_heads"],
            max_positions=a["max_position_embeddings"],
            head_pattern=pattern,
        )
    return arch


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("model.device", name, "cpu or auto (no CUDA device is visible)")
    return dev


def resolve_dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def load_tokenizer(cfg):
    from transformers import AutoTokenizer

    src = resolve_asset(cfg.tokenizer)
    if src == "byte" or (src is None and cfg.weights == "random" and cfg.path is None):
        return byte_tokenizer()
    src = src or model_path(cfg) or cfg.hub_id
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=cfg.trust_remote_code, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg):
    """(model, tokenizer) on the configured device, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    check_model(cfg)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.weights == "random":
        config = hf_config(cfg) if cfg.path is None else _local_config(cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            model_path(cfg) or cfg.hub_id, dtype=dtype, use_safetensors=True, trust_remote_code=cfg.trust_remote_code
        )
    model.to(device).eval()
    return model, load_tokenizer(cfg)


def _local_config(cfg):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_path(cfg), trust_remote_code=cfg.trust_remote_code)
