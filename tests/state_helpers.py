"""Comparing delta states that hold the same events folded in different batches."""

from __future__ import annotations

from typing import Any


def batching_free(state: Any) -> Any:
    """``state`` without what depends on how its events were batched into folds: reservoir
    keys (one run per fold) and the last bits of floating-point moments."""
    if isinstance(state, dict):
        return {key: batching_free(value) for key, value in state.items() if key != "keys"}
    if isinstance(state, list):
        return [batching_free(value) for value in state]
    if isinstance(state, float):
        return float(f"{state:.12g}")
    return state
