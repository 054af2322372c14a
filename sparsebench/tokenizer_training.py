"""Training small byte-level BPE tokenizers locally (no download): digits split one per token,
a standard `tokenizer.json` that `AutoTokenizer.from_pretrained(dir)` loads.

    python -m sparsebench.tokenizer_training OUT_DIR --vocab-size 2048

The corpus is English prose and code shipped with Python: pydoc_data's topics and the standard
library's docstrings, read in sorted order, so training is reproducible.
"""

from __future__ import annotations

import argparse
import ast
import sys
import sysconfig
from pathlib import Path

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"]


def python_corpus(max_chars: int = 8_000_000, code: bool = False, extra: list[str] | None = None) -> list[str]:
    """pydoc topics, then standard-library docstrings (sorted by module path), up to max_chars; with `code`, the
    standard library's sources too; `extra` texts (e.g. word lists, task templates) last."""
    from pydoc_data.topics import topics

    out = [topics[k] for k in sorted(topics)]
    total = sum(map(len, out))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for f in sorted(stdlib.glob("*.py")):
        if total >= max_chars:
            break
        try:
            tree = ast.parse(f.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    out.append(doc)
                    total += len(doc)
    if code:
        for f in sorted(stdlib.glob("*.py")):
            if total >= 2 * max_chars:
                break
            src = f.read_text(encoding="utf-8", errors="replace")
            out.append(src)
            total += len(src)
    return out + list(extra or [])


def testbed_extra() -> list[str]:
    """RULER's word lists (adjective-noun keys, CWE words) and the eval templates, so the words the testbed is
    trained and evaluated on tokenize compactly."""
    from sparsebench.evals.needle import PASSKEY_NEEDLE, PASSKEY_PREFIX, PASSKEY_QUESTION
    from sparsebench.evals.ruler import NEEDLE, TEMPLATES, wonderwords

    words = list(wonderwords("noun")) + list(wonderwords("adjective")) + list(wonderwords("verb"))
    lists = [" ".join(f"{i + 1}. {w}" for i, w in enumerate(words[j : j + 50])) for j in range(0, len(words), 50)]
    templates = [t + p for t, p, _, _ in TEMPLATES.values()] + [PASSKEY_PREFIX + PASSKEY_NEEDLE + PASSKEY_QUESTION, NEEDLE]
    return lists * 3 + templates * 20


def train_bpe(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer with <s> added first (as Llama's), digits split one per token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="left")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--vocab-size", type=int, default=2048)
    ap.add_argument("--max-chars", type=int, default=8_000_000)
    ap.add_argument("--testbed", action="store_true", help="also prose code, RULER's word lists and the task templates")
    args = ap.parse_args(argv)
    extra = testbed_extra() if args.testbed else None
    tok = train_bpe(python_corpus(args.max_chars, code=args.testbed, extra=extra), args.vocab_size)
    tok.save_pretrained(args.out_dir)
    print(f"saved a {len(tok)}-token tokenizer to {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
