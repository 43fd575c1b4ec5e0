"""Row b of ``bench/worker_throughput.py``, alternated run by run: a base commit and this tree.

The host's speed drifts by more than most changes are worth: an A/A pair of the same code
differed by up to 7 % (40th session), and whole slow phases come and go within minutes. So a
change is compared run by run with its base, alternating which side goes first (the order
favours neither), and judged on the wins and the means over several pairs, never on one run.

The base runs from a git worktree of ``--base``, with its own build of the native lane when
cargo is there (without cargo both sides use the installed build, and a change to ``native/``
is not what is compared). Both sides use this checkout's venv and broker (``make kafka-up``).

    .venv/bin/python bench/ab_row_b.py --base HEAD~1 --pairs 6
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
RATE = re.compile(r"row b: ([\d,]+) /s")
PER_CPU = re.compile(r"^│ b +│[^│]*│[^│]*│ *([\d,]+) *│", re.MULTILINE)


@dataclass(frozen=True)
class Side:
    name: str
    tree: Path
    pythonpath: str


@dataclass(frozen=True)
class Run:
    rate: float
    per_cpu: float | None


def cargo() -> str | None:
    found = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    return found if Path(found).is_file() else None


def base_side(commit: str, workdir: Path, console: Console) -> Side:
    """A worktree of ``commit``, with its native lane built beside it when cargo is there."""
    tree = workdir / "base"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit],
        check=True, capture_output=True,
    )  # fmt: skip
    paths = [str(tree)]
    found = cargo()
    if found is None:
        console.print("[yellow]no cargo: both sides use the installed native build")
    else:
        native = workdir / "native"
        env = {**os.environ, "PATH": f"{Path(found).parent}:{os.environ.get('PATH', '')}"}
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(native),
             str(tree / "native")],
            check=True, env=env, capture_output=True,
        )  # fmt: skip
        paths.insert(0, str(native))
    return Side("base", tree, os.pathsep.join(paths))


def run_row_b(side: Side, args: argparse.Namespace, log: Path) -> Run:
    argv = [sys.executable, "bench/worker_throughput.py", "--only", "b",
            "--events", str(args.events), "--bootstrap", args.bootstrap,
            "--monitor-config", str(args.monitor_config.resolve())]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": side.pythonpath, "COLUMNS": "200"}
    with log.open("w") as out:
        subprocess.run(argv, cwd=side.tree, env=env, stdout=out, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    rate = RATE.search(text)
    if rate is None:
        raise SystemExit(f"{side.name}: no row b rate in {log} (is Kafka up? make kafka-up)")
    per_cpu = PER_CPU.search(text)
    return Run(
        float(rate.group(1).replace(",", "")),
        None if per_cpu is None else float(per_cpu.group(1).replace(",", "")),
    )


def report(pairs: list[dict[str, Run]], first: list[str], console: Console) -> None:
    table = Table(title="row b, predictions/s (per CPU-second)")
    for column in ("pair", "first", "base", "this tree", "this / base"):
        table.add_column(column, justify="right")
    for i, (pair, lead) in enumerate(zip(pairs, first, strict=True), 1):
        base, new = pair["base"], pair["new"]
        table.add_row(
            str(i), "base" if lead == "base" else "this tree",
            f"{base.rate:,.0f} ({base.per_cpu or 0:,.0f})",
            f"{new.rate:,.0f} ({new.per_cpu or 0:,.0f})", f"{new.rate / base.rate:.3f}",
        )  # fmt: skip
    console.print(table)
    wins = sum(pair["new"].rate > pair["base"].rate for pair in pairs)
    rates = {side: mean(pair[side].rate for pair in pairs) for side in ("base", "new")}
    cpu = {
        side: mean(pair[side].per_cpu or 0.0 for pair in pairs) for side in ("base", "new")
    }  # fmt: skip
    console.print(
        f"this tree faster in {wins} of {len(pairs)} pairs; mean {rates['new']:,.0f} vs "
        f"{rates['base']:,.0f}/s ({rates['new'] / rates['base'] - 1:+.1%}); per CPU-second "
        f"{cpu['new']:,.0f} vs {cpu['base']:,.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="commit to compare this tree with")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument(
        "--monitor-config", type=Path, default=REPO / "bench/configs/high-volume.yaml"
    )
    parser.add_argument("--bootstrap", default=os.environ.get(
        "DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"))  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None, help="keep each run's log here")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="ab-row-b-"))
    logs = args.keep or workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        sides = {"base": base_side(args.base, workdir, console),
                 "new": Side("new", REPO, str(REPO))}  # fmt: skip
        pairs: list[dict[str, Run]] = []
        first: list[str] = []
        with Progress(console=console) as progress:
            task = progress.add_task("row b runs", total=2 * args.pairs)
            for i in range(args.pairs):
                order = ("base", "new") if i % 2 == 0 else ("new", "base")
                pair: dict[str, Run] = {}
                for name in order:
                    pair[name] = run_row_b(sides[name], args, logs / f"{i + 1}-{name}.log")
                    progress.advance(task)
                    progress.console.print(f"pair {i + 1} {name}: {pair[name].rate:,.0f}/s")
                pairs.append(pair)
                first.append(order[0])
        report(pairs, first, console)
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(workdir / "base")],
            capture_output=True,
        )  # fmt: skip
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
