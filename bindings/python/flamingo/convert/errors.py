"""Errors raised by the converter."""

from __future__ import annotations

from typing import Iterable, List


class ConversionError(Exception):
    """Any problem with the inputs of a conversion (the message says which file and what)."""


class UnsafeFileError(ConversionError):
    """A pickle that asks for something other than plain tensor data."""


class CorruptFileError(ConversionError):
    """A file that is truncated, inconsistent or not in the expected format."""


def listing(names: Iterable[str], limit: int = 40) -> str:
    """A sorted, comma-separated list of names, shortened after `limit` entries."""
    items: List[str] = sorted(names, key=natural_key)
    if len(items) > limit:
        return ", ".join(items[:limit]) + f", ... ({len(items) - limit} more)"
    return ", ".join(items)


def natural_key(name: str):
    """Sort key that orders 'layers.2' before 'layers.10'."""
    out = []
    for part in name.split("."):
        out.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return out
