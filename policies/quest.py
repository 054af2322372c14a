"""quest: query-aware page selection with per-page key min / max bounds.

Tang et al., Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference,
https://arxiv.org/abs/2406.10774. Pages of `page_size` tokens; the top budget / page_size
pages (at least `min_pages`) counting the current, last page, which is always read.
Prefill and `dense_layers` stay dense.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from sparsebench.kv_store import StoreSpec
from sparsebench.plans import DecodePlan, HeadGroup, Pages
from sparsebench.policies.base import POLICIES, Policy, check, check_choice, check_positive
from sparsebench.policies.paging import page_scores, select_pages


@POLICIES.register("quest")
@dataclass
class Quest(Policy):
    name: str = "quest"
    page_size: int = 16
    budget: int = 1024  # tokens read per step and head, a multiple of page_size
    min_pages: int = 3
    gqa_reduce: str = "max"  # max | sum over a KV head's query group
    per_query_head: bool = False  # each query head selects its own pages (MHA papers' behaviour)
    dense_layers: List[int] = field(default_factory=lambda: [0, 1])

    def validate(self) -> None:
        check_positive("page_size", self.page_size)
        check_positive("budget", self.budget)
        check(self.budget % self.page_size == 0, "budget", self.budget,
              f"a multiple of policy.page_size={self.page_size}")
        check_positive("min_pages", self.min_pages)
        check_choice("gqa_reduce", self.gqa_reduce, ["max", "sum"])

    def setup(self, arch) -> None:
        super().setup(arch)
        bad = [i for i in self.dense_layers if not 0 <= i < arch.n_layers]
        check(not bad, "dense_layers", list(self.dense_layers), f"layer indices in [0, {arch.n_layers})")

    def store_spec(self) -> StoreSpec:
        return StoreSpec(page_size=self.page_size, summary_page=self.page_size)

    def decode_plan(self, layer, q, store):
        n = store.n_held
        if layer in self.dense_layers or bool((n <= self.budget).all()):
            return DecodePlan.all_held(self.arch.n_kv_heads)
        heads = tuple(range(self.arch.n_kv_heads))
        scores, summary_bytes = page_scores(q, store, heads, self.per_query_head, self.gqa_reduce)
        if self.per_query_head:
            n = n.repeat_interleave(self.arch.group, dim=1)
        idx = select_pages(scores, n, self.page_size, self.budget, self.min_pages)
        return DecodePlan([HeadGroup(heads, Pages(idx, self.per_query_head))], summary_bytes=summary_bytes)
