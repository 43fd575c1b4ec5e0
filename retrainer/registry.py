"""MLflow: runs, registered versions, aliases, idempotency by tag, retries with backoff.

Every call to MLflow goes through :class:`retrainer.retry.Retrying`: transient failures are
retried with exponential backoff, then :class:`RegistryUnavailable` leaves the alert
uncommitted. Any tracking URI works: the embedded SQLite default, a file store, an
``mlflow server`` over HTTP.

Aliases (stages are deprecated): ``challenger`` marks the newest candidate that was not
promoted, ``champion`` the serving version, ``previous_champion`` the one before it (what
:meth:`Registry.rollback` returns to).

Idempotency: a version carries the ``trigger_alert_id`` tag of the alert it was trained for.
Before training the service looks the alert up; after registering, the lowest version with the
tag wins and a later duplicate (two retrainers racing on one alert) deletes itself.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlparse

from retrainer.errors import RegistryError
from retrainer.retry import Retrying, error_code

if TYPE_CHECKING:
    from retrainer.config import RetrainerConfig

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "CREATED_BY",
    "MODEL_ARTIFACT",
    "PREVIOUS_CHAMPION",
    "PROFILE_ARTIFACT",
    "TAG_ALERT",
    "Registry",
    "RunRecord",
    "VersionInfo",
]

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
PREVIOUS_CHAMPION: Final = "previous_champion"
TAG_ALERT: Final = "trigger_alert_id"
TAG_CREATED_BY: Final = "created_by"
CREATED_BY: Final = "driftline-retrainer"
PROFILE_ARTIFACT: Final = "reference_profile.json"
MODEL_ARTIFACT: Final = "model"
log = logging.getLogger("driftline.retrainer.registry")


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, as the retrainer and the CLI need it."""

    model: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def trigger_alert_id(self) -> str | None:
        return self.tags.get(TAG_ALERT)


@dataclass(frozen=True)
class RunRecord:
    """What one retrain logs: parameters, metrics, tags, the profile and the fitted model."""

    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    profile: dict[str, Any] | None = None
    model: Any = None
    status: str = "FINISHED"


def _default_artifact_root(tracking_uri: str) -> str | None:
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite" and tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return (database.resolve().parent / "mlartifacts").as_uri()
    return None


def _prepare_sqlite(tracking_uri: str) -> None:
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent.mkdir(
            parents=True, exist_ok=True
        )


def _filter_safe(value: str) -> bool:
    return "'" not in value and "\\" not in value


class Registry:
    """The retrainer's view of the MLflow tracking server and model registry."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str = "driftline-retrainer",
        artifact_root: str | None = None,
        attempts: int = 5,
        backoff_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        client: Any = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root or _default_artifact_root(tracking_uri)
        self.retrying = Retrying(
            attempts=attempts, backoff_seconds=backoff_seconds,
            backoff_max_seconds=backoff_max_seconds, sleep=sleep,
            target=f"MLflow at {tracking_uri}",
        )  # fmt: skip
        self._client = client
        self._experiment_id: str | None = None

    @classmethod
    def from_config(cls, tracking_uri: str, config: RetrainerConfig) -> Registry:
        """The registry as the retrainer's settings describe it (experiment, retries)."""
        return cls(
            tracking_uri,
            experiment=config.experiment,
            artifact_root=config.artifact_root,
            attempts=config.mlflow_attempts,
            backoff_seconds=config.backoff_seconds,
            backoff_max_seconds=config.backoff_max_seconds,
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            _prepare_sqlite(self.tracking_uri)
            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.retrying.call(what, fn, *args, **kwargs)

    # -- reading ---------------------------------------------------------------------------

    def _info(self, mv: Any, aliases: Mapping[str, str] | None = None) -> VersionInfo:
        version = str(mv.version)
        held = (
            tuple(sorted(a for a, v in aliases.items() if str(v) == version))
            if aliases is not None
            else tuple(sorted(mv.aliases or ()))
        )
        created = getattr(mv, "creation_timestamp", None)
        return VersionInfo(
            model=mv.name, version=version, run_id=mv.run_id or None, aliases=held,
            tags=dict(mv.tags or {}),
            created_at=datetime.fromtimestamp(created / 1000, UTC) if created else None,
        )  # fmt: skip

    def aliases(self, model: str) -> dict[str, str]:
        """Alias -> version of ``model`` ({} when the model is not registered)."""
        from mlflow.exceptions import MlflowException

        try:
            registered = self._call("read model", self.client.get_registered_model, model)
        except MlflowException as exc:
            if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        return {alias: str(version) for alias, version in (registered.aliases or {}).items()}

    def versions(self, model: str) -> list[VersionInfo]:
        """Every version of ``model``, newest first."""
        if not _filter_safe(model):
            raise RegistryError(f"model name {model!r} has a quote or backslash: rename it")
        found = self._call("search versions", self.client.search_model_versions, f"name='{model}'")
        aliases = self.aliases(model) if found else {}
        infos = [self._info(mv, aliases) for mv in found]
        return sorted(infos, key=lambda info: int(info.version), reverse=True)

    def version(self, model: str, version: str) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            mv = self._call("read version", self.client.get_model_version, model, version)
        except MlflowException as exc:
            raise RegistryError(
                f"{model} has no version {version}: `driftline models show {model}` lists them"
            ) from exc
        return self._info(mv, self.aliases(model))

    def alias_version(self, model: str, alias: str) -> VersionInfo | None:
        version = self.aliases(model).get(alias)
        return self.version(model, version) if version is not None else None

    def served_version(self, model: str, alert_id: str) -> VersionInfo | None:
        """The version registered for ``alert_id`` (the lowest, should there be several)."""
        if _filter_safe(model) and _filter_safe(alert_id):
            query = f"name='{model}' and tags.{TAG_ALERT}='{alert_id}'"
            found = self._call("search versions", self.client.search_model_versions, query)
            matches = [self._info(mv) for mv in found]
        else:
            matches = [v for v in self.versions(model) if v.trigger_alert_id == alert_id]
        matches = [v for v in matches if v.trigger_alert_id == alert_id]
        return min(matches, key=lambda info: int(info.version)) if matches else None

    def last_retrain_time(self, model: str) -> datetime | None:
        """When the retrainer last registered a version of ``model`` (seeds the cooldown)."""
        for info in self.versions(model):
            if info.tags.get(TAG_CREATED_BY) == CREATED_BY:
                return info.created_at
        return None

    def models(self) -> list[tuple[str, dict[str, str], int]]:
        """(name, alias -> version, number of versions) of every registered model."""
        found = self._call("search models", self.client.search_registered_models)
        out = []
        for registered in found:
            aliases = {a: str(v) for a, v in (registered.aliases or {}).items()}
            count = len(self._call(
                "search versions", self.client.search_model_versions, f"name='{registered.name}'"
            )) if _filter_safe(registered.name) else 0  # fmt: skip
            out.append((registered.name, aliases, count))
        return sorted(out)

    def reference_profile(self, info: VersionInfo) -> dict[str, Any] | None:
        """The profile logged with the version's run, or None when it has none."""
        from mlflow.exceptions import MlflowException

        if info.run_id is None:
            return None
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self._call(
                    "download the profile", self.client.download_artifacts,
                    info.run_id, PROFILE_ARTIFACT, folder,
                )  # fmt: skip
            except (MlflowException, OSError):
                return None
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        return loaded if isinstance(loaded, dict) else None

    def load_model(self, info: VersionInfo) -> Any:
        """The version's model as an MLflow pyfunc (``predict(DataFrame)``)."""
        import mlflow.artifacts
        import mlflow.pyfunc

        uri = self._call(
            "locate the model", self.client.get_model_version_download_uri,
            info.model, info.version,
        )  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="driftline-champion-") as folder:
            local = self._call(
                "download the model", mlflow.artifacts.download_artifacts,
                artifact_uri=uri, dst_path=folder, tracking_uri=self.tracking_uri,
            )  # fmt: skip
            return mlflow.pyfunc.load_model(local)  # in memory now: the folder may go

    # -- writing ---------------------------------------------------------------------------

    def _experiment(self) -> str:
        if self._experiment_id is None:
            from mlflow.exceptions import MlflowException

            found = self._call(
                "read the experiment", self.client.get_experiment_by_name, self.experiment
            )
            if found is None:
                try:
                    self._experiment_id = self._call(
                        "create the experiment", self.client.create_experiment,
                        self.experiment, artifact_location=self.artifact_root,
                    )  # fmt: skip
                except MlflowException as exc:  # another retrainer created it first
                    if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                        raise
                    found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                self._experiment_id = str(found.experiment_id)
        assert self._experiment_id is not None
        return self._experiment_id

    def log_run(self, model: str, record: RunRecord, *, run_name: str | None = None) -> str:
        """A finished run with the record's params, metrics, tags, profile and model."""
        from mlflow.entities import Metric, Param, RunTag

        run = self._call(
            "create a run", self.client.create_run, self._experiment(),
            tags={TAG_CREATED_BY: CREATED_BY, "model": model, **record.tags}, run_name=run_name,
        )  # fmt: skip
        run_id: str = run.info.run_id
        now = int(time.time() * 1000)
        self._call(
            "log the run", self.client.log_batch, run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in record.metrics.items()],
            params=[Param(k, str(v)[:6000]) for k, v in record.params.items()],
            tags=[RunTag(k, str(v)) for k, v in record.tags.items()],
        )  # fmt: skip
        if record.profile is not None:
            self._call(
                "log the profile", self.client.log_dict, run_id, record.profile, PROFILE_ARTIFACT
            )
        if record.model is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, MODEL_ARTIFACT)
                from retrainer.model_io import save_model

                save_model(record.model, path)
                self._call(
                    "upload the model", self.client.log_artifacts, run_id, path, MODEL_ARTIFACT
                )
        self._call("finish the run", self.client.set_terminated, run_id, record.status)
        return run_id

    def log_profile(self, run_id: str, profile: dict[str, Any]) -> None:
        """Attach a reference profile to a run (after registration, when the version is known)."""
        self._call("log the profile", self.client.log_dict, run_id, profile, PROFILE_ARTIFACT)

    def register(
        self, model: str, run_id: str, tags: Mapping[str, str]
    ) -> tuple[VersionInfo, bool]:
        """Register the run's model; returns (the version serving the alert, is_duplicate).

        When another retrainer registered the same alert first, ours is deleted and theirs is
        returned with ``True``.
        """
        from mlflow.exceptions import MlflowException

        try:
            self._call("create the model", self.client.create_registered_model, model)
        except MlflowException as exc:
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
        all_tags = {TAG_CREATED_BY: CREATED_BY, **tags}
        mv = self._call(
            "register a version", self.client.create_model_version, model,
            f"runs:/{run_id}/{MODEL_ARTIFACT}", run_id=run_id, tags=all_tags,
        )  # fmt: skip
        mine = self._info(mv)
        alert_id = all_tags.get(TAG_ALERT)
        winner = self.served_version(model, alert_id) if alert_id else None
        if winner is not None and winner.version != mine.version:
            log.warning(
                "duplicate_version model=%s version=%s alert=%s served_by=%s",
                model, mine.version, alert_id, winner.version,
            )  # fmt: skip
            self._call("delete a duplicate", self.client.delete_model_version, model, mine.version)
            return winner, True
        return mine, False

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self._call("set an alias", self.client.set_registered_model_alias, model, alias, version)

    def delete_alias(self, model: str, alias: str) -> None:
        self._call("delete an alias", self.client.delete_registered_model_alias, model, alias)

    def set_tag(self, model: str, version: str, key: str, value: str) -> None:
        self._call("tag a version", self.client.set_model_version_tag, model, version, key, value)

    def mark_challenger(self, model: str, version: str) -> None:
        self.set_alias(model, CHALLENGER, version)

    def promote(self, model: str, version: str) -> str | None:
        """``champion`` -> ``version``; the old champion becomes ``previous_champion``.
        Returns the previous champion's version (None when there was none)."""
        self.version(model, version)  # raises RegistryError for an unknown version
        aliases = self.aliases(model)
        previous = aliases.get(CHAMPION)
        if previous is not None and previous != version:
            self.set_alias(model, PREVIOUS_CHAMPION, previous)
        self.set_alias(model, CHAMPION, version)
        if aliases.get(CHALLENGER) == version:
            self.delete_alias(model, CHALLENGER)
        self.set_tag(model, version, "promoted_at", datetime.now(UTC).isoformat())
        return previous if previous != version else aliases.get(PREVIOUS_CHAMPION)

    def rollback(self, model: str) -> tuple[str, str]:
        """``champion`` back to ``previous_champion``; returns (demoted, restored) versions."""
        aliases = self.aliases(model)
        current, previous = aliases.get(CHAMPION), aliases.get(PREVIOUS_CHAMPION)
        if current is None or previous is None:
            raise RegistryError(
                f"{model} has no {'champion' if current is None else 'previous_champion'} "
                f"alias: nothing to roll back to (promote a version with "
                f"`driftline models promote {model} VERSION`)"
            )
        self.set_alias(model, CHAMPION, previous)
        self.delete_alias(model, PREVIOUS_CHAMPION)
        self.set_tag(model, current, "rolled_back_at", datetime.now(UTC).isoformat())
        return current, previous
