"""What the benchmark publishes: a pre-filled backlog, and a paced multi-model stream with shifts.

The backlog is ``streams.synthetic`` data (one model, 10 features: 7 numeric, 3 categorical),
generated in chunks so a large ``--events`` does not hold every event in memory. The paced
stream stamps each event with the wall clock just before it is handed to the SDK, so an alert's
``fired_at`` (the event time of the last event its window saw) is that event's produce time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from schemas.events import PredictionEvent
from schemas.settings import Settings
from streams.producer import PredictionProducer
from streams.synthetic import DEFAULT_START, FeatureSpec, feature_specs, generate_stream

__all__ = ["BacklogResult", "ShiftPlan", "fill_backlog", "paced_stream"]

FEATURES = 10
_CHUNK = 50_000


@dataclass(frozen=True)
class BacklogResult:
    predictions: int
    messages: int
    seconds: float
    failed: int


def _backlog_chunks(total: int, seed: int, models: int) -> Iterator[list[PredictionEvent]]:
    """``models`` > 1: events go round-robin to models ``bench-m00``, ``bench-m01``, ..."""
    for start in range(0, total, _CHUNK):
        raw, _ = generate_stream(
            seed=seed + start,
            n_events=min(_CHUNK, total - start),
            features=FEATURES,
            label_fraction=0.0,
            start=DEFAULT_START + timedelta(seconds=start),
        )
        yield [
            PredictionEvent.model_validate(
                {**event, "event_id": f"bl-{start + i:010d}"}
                | ({"model": f"bench-m{(start + i) % models:02d}"} if models > 1 else {})
            )
            for i, event in enumerate(raw)
        ]


def fill_backlog(
    settings: Settings, total: int, *, per_message: int, seed: int = 1, models: int = 1
) -> BacklogResult:
    """Publish ``total`` predictions through the SDK: ``send`` (per_message=1) or ``send_batch``;
    ``models`` > 1 spreads them round-robin over that many models."""
    producer = PredictionProducer(settings, max_block_seconds=10.0)
    messages = 0
    started = time.monotonic()
    try:
        for chunk in _backlog_chunks(total, seed, models):
            if per_message == 1:
                for event in chunk:
                    producer.send(event)
                messages += len(chunk)
            else:
                messages += producer.send_batch(chunk, max_batch=per_message)
    finally:
        failed = producer.close()
    failed += producer.stats.failed + producer.stats.dropped
    return BacklogResult(total, messages, time.monotonic() - started, failed)


@dataclass
class ShiftPlan:
    """Model ``m`` moves numeric feature ``feature[m]`` by 1.5 sd from its ``at[m]``-th event on.

    Shift points are staggered across the run so alerts do not all land in one judge batch.
    The first 2,600 events of a model are its warm-up reference (2,000) plus a window.
    """

    models: list[str]
    feature: list[str]
    at: list[int]
    sigma: float = 1.5
    specs: list[FeatureSpec] = field(default_factory=lambda: feature_specs(FEATURES))

    @classmethod
    def staggered(cls, n_models: int, events_per_model: int, *, prefix: str = "lat") -> ShiftPlan:
        numeric = [s.name for s in feature_specs(FEATURES) if s.kind == "numeric"]
        first, tail = 2_600, 1_500  # after warm-up + a window; two windows to decide (k=2 of 3)
        room = max(0, events_per_model - first - tail)
        return cls(
            models=[f"{prefix}-{m:02d}" for m in range(n_models)],
            feature=[numeric[m % len(numeric)] for m in range(n_models)],
            at=[first + room * m // max(1, n_models) for m in range(n_models)],
        )


def paced_stream(
    settings: Settings,
    plan: ShiftPlan,
    *,
    rate: float,
    seconds: float,
    on_tick: Callable[[float, int], None],
    seed: int = 5,
) -> tuple[int, float]:
    """Send ``rate`` predictions/s for ``seconds``, round-robin over the plan's models.

    ``on_tick(elapsed, sent)`` runs between sends (sampling). Returns (sent, elapsed seconds).
    """
    rng = np.random.default_rng(seed)
    numeric = [s for s in plan.specs if s.kind == "numeric"]
    categorical = [s for s in plan.specs if s.kind == "categorical"]
    cumulative = [np.cumsum(s.probabilities) for s in categorical]
    n_models = len(plan.models)
    producer = PredictionProducer(settings, max_block_seconds=1.0)
    sent = 0
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = min(int(rate * elapsed) - sent, 5_000)
            if due > 0:
                z = rng.standard_normal((due, len(numeric))).tolist()
                u = rng.random((due, len(categorical)))
                codes = [
                    np.minimum(np.searchsorted(cum, u[:, k]), len(cum) - 1).tolist()
                    for k, cum in enumerate(cumulative)
                ]
                for row in range(due):
                    m, index = sent % n_models, sent // n_models
                    shifted = plan.feature[m] if index >= plan.at[m] else None
                    features: dict[str, float | str | None] = {}
                    logit = -0.5
                    for k, spec in enumerate(numeric):
                        x = z[row][k] + (plan.sigma if spec.name == shifted else 0.0)
                        features[spec.name] = round(spec.mean + spec.std * x, 3)
                        logit += spec.weight * x
                    for k, spec in enumerate(categorical):
                        features[spec.name] = spec.categories[codes[k][row]]
                    producer.send(
                        PredictionEvent(
                            event_id=f"{plan.models[m]}-{index:09d}",
                            model=plan.models[m],
                            model_version="1",
                            timestamp=datetime.now(UTC),
                            features=features,
                            prediction=round(1.0 / (1.0 + math.exp(-logit)), 6),
                        )
                    )
                    sent += 1
            on_tick(elapsed, sent)
            time.sleep(0.005)
    finally:
        producer.close()
    return sent, time.monotonic() - started
