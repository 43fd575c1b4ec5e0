"""The dependency rule of design section 2, checked on the source: imports go one way.

schemas <- detectors <- retrainer, streams; only streams imports faust; only retrainer imports
mlflow; the pure packages never touch Kafka clients or Prometheus.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KAFKA_AND_IO = {"faust", "confluent_kafka", "aiokafka", "mlflow", "prometheus_client"}
FORBIDDEN: dict[str, set[str]] = {
    "schemas": KAFKA_AND_IO | {"detectors", "streams", "retrainer", "numpy", "scipy", "river"},
    "detectors": KAFKA_AND_IO | {"streams", "retrainer"},
    "retrainer": {"faust", "aiokafka", "streams"},
    "streams": {"mlflow", "retrainer"},
}
COMPOSITION_ROOT = "streams/cli.py"
"""The one module allowed to reach across: it registers the retrainer's commands (lazily)."""


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_dependency_rule_allows(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & FORBIDDEN[package])
        for path in files
    }
    if COMPOSITION_ROOT in offenders:
        offenders[COMPOSITION_ROOT] = [m for m in offenders[COMPOSITION_ROOT] if m != "retrainer"]
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_rule_checker_sees_nested_and_from_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import faust.app\nfrom mlflow import tracking\ndef f():\n import river\n")
    assert _imported_roots(module) == {"faust", "mlflow", "river"}
