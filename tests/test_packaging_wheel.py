"""The built wheel carries the four packages and the CLI; nothing leaks in from the work tree.

The fresh venv gets the wheel without dependencies; the already installed dependencies are made
visible through a .pth line (a plain path line: the dev venv's editable finder is not loaded),
so the test checks our packaging in seconds instead of re-downloading mlflow and friends.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_wheel_installs_into_a_clean_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
    )
    wheels = list(dist.glob("driftline-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheels[0])], check=True
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = (
        "import detectors, retrainer, schemas, streams, pathlib, sys; "
        "mods = [detectors, retrainer, schemas, streams]; "
        "assert all(str(pathlib.Path(m.__file__)).startswith(sys.prefix) for m in mods), mods; "
        "assert (pathlib.Path(schemas.__file__).parent / 'py.typed').exists(); "
        "assert list((pathlib.Path(schemas.__file__).parent / 'json').glob('*.json'))"
    )
    subprocess.run([str(python), "-c", probe], check=True, cwd=tmp_path)
    result = subprocess.run(
        [str(venv / "bin" / "driftline"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for command in ("topics", "replay", "worker", "alerts"):
        assert command in result.stdout, result.stdout
