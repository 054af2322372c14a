"""Turning a task's prompt text into model input ids, with or without the model's chat template.

`encode(tokenizer, text, chat, answer_prefix)`: with `chat` and a tokenizer that has a chat
template, the text becomes one user message, the generation prompt is added and the answer prefix
follows it; otherwise the text and the answer prefix are tokenized as they are (the tokenizer adds
BOS as it usually does). Returns the ids and which template ran ("model" or "none").
"""

from __future__ import annotations


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def encode(tokenizer, text: str, chat: bool, answer_prefix: str = "") -> tuple[list[int], str]:
    if chat and has_chat_template(tokenizer):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                 add_generation_prompt=True) + answer_prefix
        bos = tokenizer.bos_token
        special = not (bos and rendered.startswith(bos))  # templates usually write the BOS themselves
        return tokenizer(rendered, add_special_tokens=special)["input_ids"], "model"
    return tokenizer(text + answer_prefix)["input_ids"], "none"


def use_chat(setting: str, tokenizer) -> bool:
    """`chat_template: auto` uses the model's own template when it has one; `none` never does."""
    return setting == "auto" and has_chat_template(tokenizer)
