"""The reference profile: what a model's windows are compared with.

One type for every source: the warm-up of a model version, a profile built from training data
(``detectors.profile_builder``), or the one the retrainer publishes in a ``promoted`` model
event (``ModelEvent.reference``). It is plain JSON (finite numbers, bounded lists).

>>> profile = ReferenceProfile(
...     model="churn", model_version="3", profile_id="p-1", source="profile", count=2,
...     features={"plan": FeatureProfile(kind="categorical", count=2, categories={"pro": 2})},
... )
>>> ReferenceProfile.model_validate_json(profile.model_dump_json()) == profile
True
>>> FeatureProfile(kind="numeric", count=3, edges=[1.0, 0.5], counts=[1, 1, 1])
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for FeatureProfile
  Value error, edges must be strictly increasing, got [1.0, 0.5]...
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_PROFILE_SAMPLE",
    "FeatureProfile",
    "ProfileKind",
    "QualityBaseline",
    "ReferenceProfile",
    "SliceProfile",
    "load_profile",
]

MAX_PROFILE_SAMPLE = 100_000
"""Upper bound of a numeric feature's stored sample."""
ProfileKind = Literal["numeric", "categorical"]
_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Count = Annotated[int, Field(ge=0)]
_Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class FeatureProfile(_Frozen):
    """One feature (or the prediction, or a class score) of the reference."""

    kind: ProfileKind
    count: _Count
    """Non-null values seen."""
    nulls: _Count = 0
    """Null or absent values."""
    null_rate: _Rate = 0.0
    edges: list[_Finite] = Field(default_factory=list)
    """Numeric: inner bin edges (reference quantiles); bins are (-inf, e1], ..., (ek, inf)."""
    counts: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=list)
    """Numeric: reference values per bin, ``len(edges) + 1`` of them."""
    sample: Annotated[list[_Finite], Field(max_length=MAX_PROFILE_SAMPLE)] = Field(
        default_factory=list
    )
    """Numeric: a bounded uniform sample of the values (all of them when few)."""
    min: _Finite | None = None
    max: _Finite | None = None
    mean: _Finite | None = None
    std: _Finite | None = None
    categories: dict[str, _Count] = Field(default_factory=dict)
    """Categorical: count per category (values as text)."""
    types: dict[str, _Count] = Field(default_factory=dict)
    """Observed value types: ``number``, ``string``, ``bool``, ``null``."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"edges must be strictly increasing, got {self.edges}")
        if self.counts and len(self.counts) != len(self.edges) + 1:
            raise ValueError(
                f"counts has {len(self.counts)} bins but {len(self.edges)} edges make "
                f"{len(self.edges) + 1}: rebuild the profile"
            )
        return self


class QualityBaseline(_Frozen):
    """The model's performance on the reference's labelled outcomes."""

    task: Literal["binary", "multiclass", "regression"]
    count: _Count
    """Labelled outcomes the baseline summarises."""
    errors: _Count | None = None
    """Classification: misclassified outcomes."""
    error_rate: _Rate | None = None
    accuracy: _Rate | None = None
    precision: _Rate | None = None
    recall: _Rate | None = None
    f1: _Rate | None = None
    roc_auc: _Rate | None = None
    log_loss: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    mae: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    """Regression: mean absolute error."""
    mae_std: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    """Regression: standard deviation of the absolute errors."""
    rmse: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class SliceProfile(_Frozen):
    """The reference of the whole traffic or of one segment."""

    count: _Count
    """Prediction events summarised."""
    features: dict[str, FeatureProfile] = Field(default_factory=dict)
    prediction: FeatureProfile | None = None
    scores: dict[str, FeatureProfile] = Field(default_factory=dict)
    """Class -> profile of its score."""
    quality: QualityBaseline | None = None


class ReferenceProfile(SliceProfile):
    """A model version's baseline: every slice's features, predictions, scores and quality."""

    schema_version: Literal[1] = 1
    model: str
    model_version: str | None = None
    profile_id: str
    """Stable id of this profile (a content hash for warm-ups)."""
    source: Literal["warmup", "profile"]
    created_at: datetime | None = None
    """Event time of the last warm-up event, or when a training profile was built."""
    task: Literal["binary", "multiclass", "regression"] | None = None
    segments: dict[str, SliceProfile] = Field(default_factory=dict)
    """``key=value`` -> that segment's reference."""


def load_profile(path: str | Path) -> ReferenceProfile:
    """Read a ReferenceProfile JSON file; errors name the file and the problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read reference profile {str(path)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"reference profile {str(path)!r} is not valid JSON: {exc}") from None
    return ReferenceProfile.model_validate(data)
