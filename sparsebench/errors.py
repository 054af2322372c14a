"""The one error type for bad input: it names the config key, the value and what is allowed."""

from __future__ import annotations


class ConfigError(ValueError):
    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")

    def one_line(self) -> str:
        return f"sparsebench: error: {self.key}={self.value!r} is not allowed: expected {self.allowed}"
