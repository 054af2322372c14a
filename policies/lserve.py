"""lserve: static streaming heads + dynamic hierarchical page selection on the retrieval heads.

Yang et al., LServe: Efficient Long-sequence LLM Serving with Unified Sparse Attention,
https://arxiv.org/abs/2502.14866 (code: mit-han-lab/omniserve).

- Streaming heads (DuoAttention pattern, sparsity 0.5): prefill sink 128 + local 8192,
  token-exact; decode sink 128 + local 256 (the released kernels attend the first 128
  tokens, the last 255 history tokens and the current one: `streaming_granularity=token`;
  `page` counts the local window in whole pages instead).
- Retrieval heads: dense prefill; in decode, physical pages of 64 tokens scored by the max
  of their 16-token logical pages' Quest bounds; n_sel = min(max(3, B / 64), #pages) pages,
  the top n_sel - 1 among all but the last page plus the last page; every page while the
  history fits the budget. Scores are per query head by default (as the released kernels).
- Reusable selector: recomputed when the history length (the new token included) is a
  multiple of `reuse_interval`, reused in between, reset at prefill. On reuse steps the
  current last page is added to the reused list (`reuse_last_page=add`): the released code
  reuses the list verbatim and can skip the newest tokens for a few steps after a page
  boundary; we do not reproduce that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch

from sparsebench.kv_store import StoreSpec
from sparsebench.plans import AllHeld, HeadGroup, Pages
from sparsebench.policies.base import POLICIES, check, check_choice, check_positive
from sparsebench.policies.paging import page_scores, select_pages, sort_pages
from sparsebench.policies.streaming_heads import StreamingHeads


@POLICIES.register("lserve")
@dataclass
class LServe(StreamingHeads):
    name: str = "lserve"
    sparsity: float = 0.5
    sink: int = 128  # decode sink of streaming heads
    local: int = 256  # decode local window of streaming heads
    prefill_sink: Optional[int] = 128
    prefill_local: Optional[int] = 8192
    granularity: str = "token"
    page_size: int = 64  # physical page
    logical_page_size: int = 16
    budget: int = 4096  # tokens per retrieval head and step, a multiple of page_size
    min_pages: int = 3
    reuse_interval: int = 4
    reuse_last_page: str = "add"
    per_query_head: bool = True
    gqa_reduce: str = "max"  # used when per_query_head is false
    dense_layers: List[int] = field(default_factory=list)

    def validate(self) -> None:
        super().validate()
        check_positive("logical_page_size", self.logical_page_size)
        check(self.page_size % self.logical_page_size == 0, "logical_page_size", self.logical_page_size,
              f"a divisor of policy.page_size={self.page_size}")
        check_positive("budget", self.budget)
        check(self.budget % self.page_size == 0, "budget", self.budget,
              f"a multiple of policy.page_size={self.page_size}")
        check_positive("min_pages", self.min_pages)
        check_positive("reuse_interval", self.reuse_interval)
        check_choice("reuse_last_page", self.reuse_last_page, ["add"])
        check_choice("gqa_reduce", self.gqa_reduce, ["max", "sum"])

    def setup(self, arch) -> None:
        super().setup(arch)
        bad = [i for i in self.dense_layers if not 0 <= i < arch.n_layers]
        check(not bad, "dense_layers", list(self.dense_layers), f"layer indices in [0, {arch.n_layers})")

    def store_spec(self) -> StoreSpec:
        return StoreSpec(page_size=self.page_size, summary_page=self.logical_page_size)

    def variant(self) -> dict:
        return {**super().variant(), "reuse_last_page": self.reuse_last_page,
                "page_scores": "per query head" if self.per_query_head else f"{self.gqa_reduce} over the query group"}

    def retrieval_group(self, layer, q, store):
        heads = self.retrieval_heads(layer)
        if not heads:
            return []
        n = store.logical_len  # retrieval heads hold every token
        if layer in self.dense_layers or bool((n <= self.budget).all()):
            return [HeadGroup(heads, AllHeld())]
        st = store.state
        due = (n % self.reuse_interval == 0) if "sel" in st else torch.ones_like(n, dtype=torch.bool)
        rows = len(heads) * (self.arch.group if self.per_query_head else 1)
        n_rows = n.view(-1, 1).expand(-1, rows)
        if bool(due.any()):
            scores, sbytes = page_scores(q, store, heads, self.per_query_head, self.gqa_reduce)
            fresh = select_pages(scores, n_rows, self.page_size, self.budget, self.min_pages)
            st["summary_bytes"] = sbytes * due
            if "sel" in st:
                old = st["sel"]
                w = max(old.shape[-1], fresh.shape[-1])
                old = torch.nn.functional.pad(old, (0, w - old.shape[-1]), value=-1)
                fresh = torch.nn.functional.pad(fresh, (0, w - fresh.shape[-1]), value=-1)
                fresh = torch.where(due.view(-1, 1, 1), fresh, old)
            st["sel"] = fresh
        else:
            st["summary_bytes"] = None
        sel = st["sel"]
        last = (-(-n_rows // self.page_size) - 1).unsqueeze(-1)  # [B, R, 1] current last page
        present = (sel == last).any(-1, keepdim=True)
        sel = sort_pages(torch.cat([sel, torch.where(present, torch.full_like(last, -1), last)], dim=-1))
        return [HeadGroup(heads, Pages(sel, self.per_query_head))]

    def decode_plan(self, layer, q, store):
        plan = super().decode_plan(layer, q, store)
        plan.summary_bytes = store.state.pop("summary_bytes", None)
        return plan
