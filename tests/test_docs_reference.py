"""The user documentation cannot silently go stale.

Every setting (``schemas.settings.Settings``, ``retrainer.config.RetrainerConfig``), every monitor
configuration field and every CLI command and option must appear in the reference pages, with
its default and allowed values; every monitor YAML shown in docs/ and examples/ must load; the
README's SDK snippet must compile against the SDK's real signatures; relative links and the
Prometheus rules' runbook anchors must resolve; and the example configuration must do what
examples/README.md says.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
EXAMPLES = REPO / "examples"
CONFIGURATION = DOCS / "configuration.md"
CLI = DOCS / "cli.md"
README = REPO / "README.md"
MONITOR_KEYS = frozenset({"defaults", "models", "join"})


# -- helpers ------------------------------------------------------------------------------------


def _read(path: Path) -> str:
    assert path.is_file(), f"{path.relative_to(REPO)} is missing: it is part of the user docs"
    return path.read_text(encoding="utf-8")


def _rows(text: str) -> dict[str, list[str]]:
    """Cells after the first of each Markdown table row, keyed by the backticked name(s) in the
    first cell; in the reference tables the next cell is the default."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = line.strip().strip("|").split("|")
        for name in re.findall(r"`([^`]+)`", cells[0]):
            rows.setdefault(name, cells[1:] or [""])
    return rows


def _spans(row: str) -> list[str]:
    return [span.strip() for span in re.findall(r"`([^`]*)`", row)]


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``Annotated[X, ...]``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds directly (through Optional), else None."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _literals(annotation: Any) -> list[Any]:
    """Every Literal value anywhere inside an annotation (lists, dicts, Optional)."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [value for arg in get_args(annotation) for value in _literals(arg)]


def _scalar_forms(value: Any) -> set[str]:
    """How a default may be written in the docs."""
    if isinstance(value, bool):
        return {str(value).lower()}
    forms = {str(value)}
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        forms |= {str(value), f"{value:,}", f"{value:_}"}
    return forms


def _check_default(where: str, name: str, cell: str, default: Any) -> list[str]:
    """``cell`` (the row's default column) states ``default``."""
    spans = _spans(cell)
    if default is None:
        ok = "unset" in cell or any(span in ("null", "None") for span in spans)
        return [] if ok else [f"{where}: {name}: the default (unset/null) is not stated"]
    if isinstance(default, (bool, int, float, str)):
        forms = _scalar_forms(default)
        if any(span in forms for span in spans):
            return []
        return [f"{where}: {name}: default {default!r} is not in its default column"]
    items = list(default.items()) if isinstance(default, dict) else list(default)
    flat = [str(part) for item in items for part in (item if isinstance(item, tuple) else (item,))]
    missing = [part for part in flat if not any(part in span for span in spans)]
    return [f"{where}: {name}: default elements {missing} not shown"] if missing else []


def _field_default(field: Any) -> Any:
    if field.default_factory is not None:
        return field.default_factory()
    return None if field.default is PydanticUndefined else field.default


def _check_field(where: str, name: str, rows: dict[str, list[str]], field: Any) -> list[str]:
    cells = rows.get(name)
    if cells is None:
        return [f"{where}: no table row for `{name}`"]
    problems = _check_default(where, name, cells[0], _field_default(field))
    row = "|".join(cells)
    missing = [value for value in _literals(field.annotation) if str(value) not in row]
    if missing:
        problems.append(f"{where}: {name}: allowed values {missing} not listed")
    return problems


def _fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


# -- runtime settings ---------------------------------------------------------------------------


def _settings_fields(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[Any]:
    for name, field in model.model_fields.items():
        nested = _model_in(field.annotation)
        if nested is not None:
            yield from _settings_fields(nested, (*path, name))
        else:
            yield (*path, name), field


def test_every_setting_is_documented_with_its_default() -> None:
    from schemas.settings import Settings, env_var

    rows = _rows(_read(CONFIGURATION))
    fields = list(_settings_fields(Settings))
    assert len(fields) >= 15, "the walk over Settings found too few fields"
    problems = [
        problem
        for path, field in fields
        for problem in _check_field("configuration.md", env_var(*path), rows, field)
    ]
    assert not problems, "\n".join(problems)


def test_every_retrainer_setting_is_documented_with_its_default() -> None:
    from retrainer.config import ENV_PREFIX, RetrainerConfig

    rows = _rows(_read(CONFIGURATION))
    problems = [
        problem
        for name, field in RetrainerConfig.model_fields.items()
        for problem in _check_field("configuration.md", ENV_PREFIX + name.upper(), rows, field)
    ]
    assert len(RetrainerConfig.model_fields) >= 20
    assert not problems, "\n".join(problems)


# -- monitor configuration ----------------------------------------------------------------------


def _monitor_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted names of the leaves; a model configuration is documented relative to it."""
    from schemas.monitor_config import ModelMonitorConfig

    for name, field in model.model_fields.items():
        dotted = prefix + name
        nested = _model_in(field.annotation)
        holds_model = ModelMonitorConfig in (
            nested,
            *(_model_in(arg) for arg in get_args(_unwrap(field.annotation))),
        )
        if holds_model:
            yield dotted, None  # `defaults`, `models`: a row of their own, then the fields
        elif nested is not None:
            yield from _monitor_fields(nested, dotted + ".")
        else:
            yield dotted, field


def test_every_monitor_field_is_documented_with_default_and_allowed_values() -> None:
    from schemas.monitor_config import ModelMonitorConfig, MonitorConfig

    rows = _rows(_read(CONFIGURATION))
    fields = [*_monitor_fields(MonitorConfig), *_monitor_fields(ModelMonitorConfig)]
    assert {"defaults", "models", "join.ttl_seconds", "window.size"} <= {n for n, _ in fields}
    problems: list[str] = []
    for name, field in fields:
        if field is None:
            if name not in rows:
                problems.append(f"configuration.md: no table row for `{name}`")
            continue
        problems += _check_field("configuration.md", name, rows, field)
    assert not problems, "\n".join(problems)


def _yaml_sources() -> Iterator[tuple[str, str]]:
    """(where, text) of every fenced yaml block in the docs and every YAML file in examples/."""
    pages = [README, *sorted(DOCS.rglob("*.md")), *sorted(EXAMPLES.rglob("*.md"))]
    for page in pages:
        for number, block in enumerate(_fenced(_read(page), "ya?ml"), start=1):
            yield f"{page.relative_to(REPO)} yaml block {number}", block
    for path in sorted([*EXAMPLES.rglob("*.yaml"), *EXAMPLES.rglob("*.yml")]):
        yield str(path.relative_to(REPO)), _read(path)


def _claims_monitor_config(text: str) -> bool:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:  # judged by its top-level keys alone; the loader then reports it
        return re.search(r"^(defaults|models|join):", text, flags=re.M) is not None
    return isinstance(data, dict) and bool(MONITOR_KEYS & set(data))


def test_every_monitor_yaml_in_docs_and_examples_loads(tmp_path: Path) -> None:
    from schemas.monitor_config import MonitorConfigError, load_monitor_config

    checked, problems = [], []
    for index, (where, text) in enumerate(_yaml_sources()):
        if not _claims_monitor_config(text):
            continue
        path = tmp_path / f"block{index}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_monitor_config(path)
        except MonitorConfigError as exc:
            problems.append(f"{where}: {exc}")
        checked.append(where)
    assert not problems, "\n".join(problems)
    # The reference pages and the example must be among them (a renamed page would hide them).
    assert {"docs/configuration.md yaml block 1", "examples/monitor.yaml"} <= set(checked)
    assert any(where.startswith("docs/monitoring.md") for where in checked)


def test_example_configuration_covers_a_classifier_and_a_regressor() -> None:
    from schemas.monitor_config import load_monitor_config

    config = load_monitor_config(EXAMPLES / "monitor.yaml")
    fraud, eta = config.for_model("fraud-scorer"), config.for_model("delivery-eta")
    assert fraud.task == "binary" and eta.task == "regression"
    assert {"numeric", "categorical"} <= set(fraud.features.values())
    assert eta.window.type == "time" and eta.window.slide is not None
    # Deep merge: what a model does not set comes from `defaults`.
    assert fraud.alerting.runbook_url == config.defaults.alerting.runbook_url is not None
    assert fraud.alerting.severity["data_quality"] == "critical"
    assert eta.alerting.severity["data_quality"] == "warning"


def test_example_configuration_detects_the_documented_shift(tmp_path: Path) -> None:
    """What examples/README.md promises: a shift of `amount` alerts on `amount`, nothing else
    fires on the features, and the same stream without the shift raises no alert."""
    from schemas.monitor_config import load_monitor_config
    from streams.cli_backtest import run_backtest
    from streams.synthetic import generate_stream, write_stream

    config = load_monitor_config(EXAMPLES / "monitor.yaml")
    readme = _read(EXAMPLES / "README.md")
    assert "--config examples/monitor.yaml" in readme

    def firing(directory: Path, shift_at: int | None) -> list[Any]:
        predictions, labels = generate_stream(3, 12_000, shift_at=shift_at, shift_sigma=1.0)
        written = write_stream(directory, predictions, labels, "jsonl")
        result = run_backtest(
            written[0],
            written[1],
            config,
            BytesIO(),
            clock=lambda: datetime(2024, 6, 1, tzinfo=UTC),
        )
        assert result.predictions == 12_000 and result.invalid_predictions == 0
        return [alert for alert in result.alerts if alert.status == "firing"]

    shifted = firing(tmp_path / "shifted", shift_at=7_000)
    drifted = {alert.feature for alert in shifted if alert.kind == "feature_drift"}
    assert drifted == {"amount"}, drifted
    first = min(alert.fired_at for alert in shifted if alert.feature == "amount")
    # the mean-shift CUSUM pages within a few hundred events (windows of 1000 and k=2 of m=3
    # would take until the end of the 2nd window after the shift, event 8,999)
    assert 7_000 <= (first - datetime(2024, 1, 1, tzinfo=UTC)).total_seconds() < 7_300
    assert firing(tmp_path / "stationary", shift_at=None) == []


# -- command line -------------------------------------------------------------------------------


def _commands() -> dict[str, Any]:
    """Every leaf command of the `driftline` app, by its full name ("driftline models list").

    Duck-typed: typer builds click-like objects (its own vendored click in recent versions).
    """
    from streams import cli

    if not any(info.name == "backtest" for info in cli.app.registered_commands):
        cli.register_commands()
    found: dict[str, Any] = {}

    def walk(command: Any, name: str) -> None:
        if isinstance(getattr(command, "commands", None), dict):
            for sub_name, sub in command.commands.items():
                walk(sub, f"{name} {sub_name}")
        else:
            found[name] = command

    walk(typer.main.get_command(cli.app), "driftline")
    return found


def _cli_sections(text: str) -> dict[str, str]:
    """Body of each `## driftline ...` section (up to the next level-2 heading)."""
    sections: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        heading = re.match(r"^##\s+(.*)$", line)
        if heading:
            current = heading.group(1).strip().strip("`").strip()
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def test_every_cli_command_and_option_is_documented() -> None:
    commands = _commands()
    assert {"driftline backtest", "driftline models list", "driftline alerts tail"} <= set(commands)
    sections = _cli_sections(_read(CLI))
    problems: list[str] = []
    for name, command in sorted(commands.items()):
        body = sections.get(name)
        if body is None:
            problems.append(f"cli.md: no `## {name}` section")
            continue
        for param in command.params:
            kind = getattr(param, "param_type_name", None)
            if kind == "option":
                flag = next(opt for opt in param.opts if opt.startswith("-"))
                if flag in ("--help", "-h"):
                    continue
                cells = _rows(body).get(flag)
                if cells is None:
                    problems.append(f"cli.md: `{name}` has no table row for {flag}")
                elif param.default is not None and not isinstance(param.default, bool):
                    problems += _check_default(f"cli.md `{name}`", flag, cells[0], param.default)
            elif kind == "argument" and f"`{param.name.upper()}`" not in body:
                problems.append(f"cli.md: `{name}` does not document argument {param.name.upper()}")
    assert not problems, "\n".join(problems)


# -- README -------------------------------------------------------------------------------------


def _sdk_snippets() -> list[str]:
    return [block for block in _fenced(_read(README), "python") if "streams.producer" in block]


def test_readme_starts_with_the_two_commands() -> None:
    text = _read(README)
    first_block = _fenced(text, "bash")[0]
    assert text.index("```bash") < text.index("\n## "), "the commands must come first"
    assert "make demo" in first_block and "make test" in first_block


def test_readme_sdk_snippet_compiles_against_the_sdk() -> None:
    from streams import producer

    snippets = _sdk_snippets()
    assert snippets, "README.md has no ```python block using streams.producer"
    methods = {
        "predict": producer.PredictionProducer.predict,
        "label": producer.LabelProducer.label,
        "send_batch": producer.PredictionProducer.send_batch,
    }
    constructors = {"PredictionProducer", "LabelProducer"}
    problems: list[str] = []
    for snippet in snippets:
        tree = ast.parse(snippet)
        compile(tree, "README.md", "exec")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "streams.producer":
                problems += [
                    f"imports {alias.name}, not in streams.producer.__all__"
                    for alias in node.names
                    if alias.name not in producer.__all__
                ]
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in methods:
                target: Any = methods[func.attr]
            elif isinstance(func, ast.Name) and func.id in constructors:
                target = producer.KafkaEventProducer.__init__
            else:
                continue
            accepted = set(inspect.signature(target).parameters)
            problems += [
                f"{ast.unparse(func)}() has no parameter {kw.arg!r}"
                for kw in node.keywords
                if kw.arg is not None and kw.arg not in accepted
            ]
    assert not problems, "\n".join(problems)


def test_readme_links_the_reference_docs_and_the_picture() -> None:
    text = _read(README)
    for target in (
        "docs/cli.md",
        "docs/configuration.md",
        "docs/operations.md",
        "docs/monitoring.md",
        "docs/dataflow.svg",
        "examples/",
    ):
        assert f"]({target}" in text, f"README.md does not link {target}"
        assert (REPO / target).exists(), f"README.md links {target}, which does not exist"
    svg = _read(DOCS / "dataflow.svg")
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.fromstring(svg)
    assert root.tag.endswith("svg")
    for topic in ("predictions", "labels", "alerts", "models"):
        assert f"driftline.{topic}" in svg


# -- links --------------------------------------------------------------------------------------


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors of a Markdown page (headings inside code fences excluded)."""
    anchors: set[str] = set()
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        heading = re.match(r"^#{1,6}\s+(.*)$", line)
        if heading and not in_fence:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            candidate, n = slug, 0
            while candidate in anchors:
                n += 1
                candidate = f"{slug}-{n}"
            anchors.add(candidate)
    return anchors


def _broken(target: str, base: Path) -> str | None:
    """Why ``path#anchor`` (relative to ``base``) does not resolve, or None."""
    path_part, _, anchor = target.partition("#")
    path = (base / path_part).resolve()
    if not path.exists():
        return f"{target}: no such file"
    if anchor and path.suffix == ".md" and anchor not in _anchors(_read(path)):
        return f"{target}: no heading with anchor #{anchor}"
    return None


def test_relative_links_and_anchors_resolve() -> None:
    pages = [README, *sorted(DOCS.rglob("*.md")), *sorted(EXAMPLES.rglob("*.md"))]
    problems: list[str] = []
    for page in pages:
        text = _read(page)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # http:, https:, mailto:, file:
            resolved = target if not target.startswith("#") else f"{page.name}{target}"
            problem = _broken(resolved, page.parent)
            if problem:
                problems.append(f"{page.relative_to(REPO)}: {problem}")
    assert not problems, "\n".join(problems)


def test_prometheus_runbook_links_resolve_to_operations_sections() -> None:
    rules = sorted((REPO / "deploy" / "prometheus").rglob("*.rules.yml"))
    urls = [
        rule["annotations"]["runbook_url"]
        for path in rules
        for group in yaml.safe_load(_read(path))["groups"]
        for rule in group["rules"]
        if "runbook_url" in rule.get("annotations", {})
    ]
    assert urls, "no runbook_url in deploy/prometheus/**/*.rules.yml"
    problems = [problem for url in urls if (problem := _broken(url, REPO))]
    assert not problems, "\n".join(problems)
