"""Identifiers: URL-safe, sortable by creation time, unique (ULID layout, Crockford base32)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str = "", now: float | None = None) -> str:
    """48 bits of milliseconds then 80 random bits: 26 characters after ``prefix``."""
    millis = int((time.time() if now is None else now) * 1000)
    return prefix + _base32(millis, 10) + _base32(int.from_bytes(os.urandom(10), "big"), 16)


def new_execution_id() -> str:
    return new_id("exec_")
