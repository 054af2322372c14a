"""lm-eval model classes: HFLM around a model that runs under a sparsebench policy.

Imported only when lm-eval is used (it imports lm-eval and accelerate). `AttachedHFLM` wraps a
model the caller has already attached; `SparseBenchLM` (registered as `--model sparsebench`)
builds the model, policy and backend from sparsebench's own configs, so the same validation
applies: `--model_args model=tiny_llama,policy=lserve,policy.budget=2048,backend=reference`
(any further `key=value` is a sparsebench config override).
"""

from __future__ import annotations

from contextlib import ExitStack

from lm_eval.api.registry import model_registry, register_model
from lm_eval.models.huggingface import HFLM

LM_EVAL_DEFAULT_DEVICE = "cuda:0"  # what lm-eval's CLI passes when --device is not given


class AttachedHFLM(HFLM):
    """HFLM around an already-built (and already attached) transformers model."""

    def __init__(self, model, tokenizer, batch_size=1, max_length=None, info=None, **kwargs):
        if not getattr(model.config, "_name_or_path", ""):
            model.config._name_or_path = "sparsebench"
        self._sb_info = dict(info or {})
        super().__init__(pretrained=model, tokenizer=tokenizer, batch_size=int(batch_size), max_length=max_length,
                         backend="causal", **kwargs)

    def get_model_info(self) -> dict:
        return {"model_num_parameters": sum(p.numel() for p in self.model.parameters()),
                "model_dtype": str(self.model.dtype), **self._sb_info}


class SparseBenchLM(AttachedHFLM):
    def __init__(self, model="tiny_llama", policy="full", backend="auto", device=None, batch_size=1,
                 max_batch_size=None, max_length=None, trust_remote_code=False, **overrides):
        from hydra import compose, initialize_config_module
        from hydra.core.global_hydra import GlobalHydra

        from sparsebench.attention import attach
        from sparsebench.config import register_configs
        from sparsebench.models import load_model
        from sparsebench.runner import build

        register_configs()
        args = [f"model={model}", f"policy={policy}", f"backend={backend}",
                *[f"{k}={v}" for k, v in overrides.items()]]
        if device not in (None, LM_EVAL_DEFAULT_DEVICE):
            args.append(f"model.device={device}")
        if trust_remote_code:
            args.append("model.trust_remote_code=true")
        if GlobalHydra.instance().is_initialized():
            cfg = compose("config", overrides=args)
        else:
            with initialize_config_module("sparsebench.conf", version_base="1.3"):
                cfg = compose("config", overrides=args)
        spec = build(cfg)
        hf_model, tok = load_model(cfg.model)
        self._stack = ExitStack()
        self.session = self._stack.enter_context(attach(hf_model, spec.policy, spec.backend, arch=spec.arch))
        hf_model.config._name_or_path = f"sparsebench/{model}"
        super().__init__(hf_model, tok, batch_size=batch_size, max_length=max_length or min(spec.arch.max_positions, 32768),
                         info={"policy": spec.policy.name, "backend": spec.backend, "policy_config": spec.policy.config()})

    def close(self) -> None:
        self._stack.close()


if "sparsebench" not in model_registry:
    register_model("sparsebench")(SparseBenchLM)
