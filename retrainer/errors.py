"""One exception root for the retrainer; the service decides per class what happens to an alert.

- :class:`RegistryUnavailable`, :class:`DatasetUnavailable`, :class:`PublishError` and
  :class:`AlertInProgress` are transient: the alert stays uncommitted and is tried again later.
- :class:`TrainerLoadError` and :class:`ConfigError` stop the service at start (nothing can work).
- Anything a plug-in trainer raises becomes a ``rejected`` outcome; the service keeps running.
"""

from __future__ import annotations

__all__ = [
    "AlertInProgress",
    "ConfigError",
    "DatasetUnavailable",
    "PublishError",
    "RegistryError",
    "RegistryUnavailable",
    "RetrainerError",
    "TrainerLoadError",
]


class RetrainerError(Exception):
    """Root of every error the retrainer raises on purpose."""


class ConfigError(RetrainerError, ValueError):
    """The retrainer configuration is invalid; the message names the variable to fix."""


class TrainerLoadError(RetrainerError):
    """The configured ``module:function`` trainer cannot be imported or is not callable."""


class RegistryError(RetrainerError):
    """The registry refused an operation (an unknown model or version, a missing alias)."""


class RegistryUnavailable(RetrainerError):
    """MLflow did not answer after every retry; the alert is left uncommitted."""


class PublishError(RetrainerError):
    """A ModelEvent was not acknowledged by Kafka; the alert is left uncommitted."""


class DatasetUnavailable(RetrainerError):
    """Kafka did not hand back the dataset's window in time; the alert is left uncommitted."""


class AlertInProgress(RetrainerError):
    """Another retrainer registered a version for the alert and has not announced it yet."""
