"""driftline.detectors: every statistic and the per-model monitor; pure, no I/O, no clock.

The public names below are importable from ``detectors`` directly; each is loaded from its
module on first use, so ``import detectors`` stays cheap (no scipy or river until needed).

>>> import detectors
>>> detectors.FleetMonitor.__module__, "ks" in detectors.__all__
('detectors.monitor', True)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detectors.accumulate import PartitionAccumulator
    from detectors.alerting import AlertBook, alert_id, fingerprint
    from detectors.calibration import (
        NullThresholds,
        firing_probability,
        per_test_alpha,
        run_length,
    )
    from detectors.categorical import CategoricalSketch
    from detectors.data_quality import (
        FeatureTypeTracker,
        missing_features,
        new_features,
        null_rate,
        out_of_range_rate,
        type_changes,
    )
    from detectors.join import JoinStats, LabelJoiner, Outcome
    from detectors.judge import ModelJudge, StatisticPoint
    from detectors.latency import LatencySketch
    from detectors.monitor import FleetMonitor
    from detectors.profile_builder import (
        profile_from_delta,
        profile_from_events,
        profile_from_frame,
    )
    from detectors.quality import ClassificationSketch
    from detectors.regression import RegressionSketch
    from detectors.sequential import SequentialDetector
    from detectors.sketches import NumericSketch
    from detectors.stats import (
        CATEGORICAL_TESTS,
        NUMERIC_TESTS,
        StatResult,
        categorical_js,
        categorical_psi,
        chi_square,
        jensen_shannon,
        ks,
        psi,
        quantile_edges,
        unseen_rate,
        wasserstein,
    )
    from detectors.window import SliceDelta, WindowDelta

_EXPORTS: dict[str, str] = {
    # the monitor
    "FleetMonitor": "monitor",
    "ModelJudge": "judge",
    "StatisticPoint": "judge",
    "LabelJoiner": "join",
    "Outcome": "join",
    "JoinStats": "join",
    "PartitionAccumulator": "accumulate",
    "WindowDelta": "window",
    "SliceDelta": "window",
    "AlertBook": "alerting",
    "fingerprint": "alerting",
    "alert_id": "alerting",
    "profile_from_delta": "profile_builder",
    "profile_from_events": "profile_builder",
    "profile_from_frame": "profile_builder",
    "NullThresholds": "calibration",
    "per_test_alpha": "calibration",
    "firing_probability": "calibration",
    "run_length": "calibration",
    # sketches and statistics
    "NumericSketch": "sketches",
    "CategoricalSketch": "categorical",
    "StatResult": "stats",
    "NUMERIC_TESTS": "stats",
    "CATEGORICAL_TESTS": "stats",
    "ks": "stats",
    "psi": "stats",
    "wasserstein": "stats",
    "jensen_shannon": "stats",
    "chi_square": "stats",
    "categorical_psi": "stats",
    "categorical_js": "stats",
    "unseen_rate": "stats",
    "quantile_edges": "stats",
    "ClassificationSketch": "quality",
    "RegressionSketch": "regression",
    "LatencySketch": "latency",
    "FeatureTypeTracker": "data_quality",
    "null_rate": "data_quality",
    "out_of_range_rate": "data_quality",
    "type_changes": "data_quality",
    "missing_features": "data_quality",
    "new_features": "data_quality",
    "SequentialDetector": "sequential",
}

__all__ = [
    "CATEGORICAL_TESTS",
    "NUMERIC_TESTS",
    "AlertBook",
    "CategoricalSketch",
    "ClassificationSketch",
    "FeatureTypeTracker",
    "FleetMonitor",
    "JoinStats",
    "LabelJoiner",
    "LatencySketch",
    "ModelJudge",
    "NullThresholds",
    "NumericSketch",
    "Outcome",
    "PartitionAccumulator",
    "RegressionSketch",
    "SequentialDetector",
    "SliceDelta",
    "StatResult",
    "StatisticPoint",
    "WindowDelta",
    "alert_id",
    "categorical_js",
    "categorical_psi",
    "chi_square",
    "fingerprint",
    "firing_probability",
    "jensen_shannon",
    "ks",
    "missing_features",
    "new_features",
    "null_rate",
    "out_of_range_rate",
    "per_test_alpha",
    "profile_from_delta",
    "profile_from_events",
    "profile_from_frame",
    "psi",
    "quantile_edges",
    "run_length",
    "type_changes",
    "unseen_rate",
    "wasserstein",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'detectors' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"detectors.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
