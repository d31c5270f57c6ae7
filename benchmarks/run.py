"""Run every benchmark in turn (``make bench``) and write the docs' generated part.

Each benchmark prints Markdown tables. This script runs them one after the other, each
in its own Python process (Django's settings, Flask-Mail's change to ``email.charset``
and the servers one benchmark starts must not leak into the next one), shows their
output as it comes, and then writes, through ``_report.py``:

- ``docs/_generated/benchmarks.txt``: the raw output and the machine it ran on, so the
  page can be regenerated without running everything again
  (``python benchmarks/_report.py``);
- ``docs/_generated/benchmarks.md``: the tables, with the command and the machine,
  which ``docs/benchmarks.md`` includes;
- ``docs/_generated/benchmarks.svg``: a bar chart of the ratios.

Run: ``make bench`` or ``.venv/bin/python benchmarks/run.py [--quick [scale,...]]
[--only send,flask] [--no-report]``. ``--quick`` passes each benchmark its own
``--quick`` (or fewer rounds to those without one): noisier figures in a fraction of
the time. ``--quick scale`` does that for the benchmarks named only: bench_scale's
full profile alone takes about 35 minutes on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _report  # noqa: E402  (a sibling module, found through the path set above)

BENCHMARKS = (
    "bench_build.py",
    "bench_send.py",
    "bench_outbox.py",
    "bench_alerts.py",
    "bench_state.py",
    "bench_scale.py",
    "bench_django.py",
    "bench_flask.py",
)

# What --quick passes: a benchmark's own --quick where it has one, else fewer rounds
# (these take the options their argparse parser defines, nothing else).
QUICK_ARGS: dict[str, list[str]] = {
    "bench_build.py": ["--rounds", "3"],
    "bench_send.py": ["--rounds", "3"],
    "bench_outbox.py": ["--rounds", "7", "--bursts", "1"],
    "bench_alerts.py": ["--rounds", "3"],
    "bench_state.py": ["--quick"],
    "bench_scale.py": ["--quick"],
    "bench_django.py": ["--quick"],
    "bench_flask.py": ["--quick"],
}


def run_one(name: str, quick: bool) -> _report.Section:
    """Run one benchmark in a child process, echoing its output; return what it printed."""
    argv = [sys.executable, str(HERE / name), *(QUICK_ARGS[name] if quick else [])]
    print(f"\n## {name}", flush=True)
    start = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=HERE.parent) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line.rstrip("\n"))
    seconds = time.monotonic() - start
    return _report.Section(
        name=name,
        args=argv[2:],
        returncode=proc.returncode,
        seconds=seconds,
        output="\n".join(lines),
    )


def main() -> int:
    """Run the benchmarks and write the report; non-zero when one of them failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        nargs="?",
        const="all",
        metavar="NAMES",
        help="smaller, faster, noisier runs: of every benchmark, or of those named (scale,django)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated benchmarks to run, e.g. send,flask (the report then holds only them)",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="print only; leave docs/_generated/ alone"
    )
    args = parser.parse_args()
    names = _names(parser, "--only", args.only) if args.only else list(BENCHMARKS)
    quick = set(BENCHMARKS) if args.quick == "all" else set(_names(parser, "--quick", args.quick))

    run = _report.Run(
        machine=_report.machine(),
        started=time.strftime("%Y-%m-%d %H:%M %Z"),
        quick=[n for n in names if n in quick],
        command=_command(args),
        sections=[run_one(name, name in quick) for name in names],
    )
    if not args.no_report:
        written = _report.write(run, _report.GENERATED)
        print("\nWrote " + ", ".join(str(p.relative_to(HERE.parent)) for p in written))
    failed = [s.name for s in run.sections if s.returncode != 0]
    if failed:
        print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _names(parser: argparse.ArgumentParser, option: str, value: str | None) -> list[str]:
    """``send,flask`` as the benchmarks' file names, in run order. An unknown name is
    refused: a typo must not silently run a 35-minute full profile."""
    if not value:
        return []
    wanted = {
        f"bench_{w.strip().removeprefix('bench_').removesuffix('.py')}.py" for w in value.split(",")
    }
    unknown = wanted - set(BENCHMARKS)
    if unknown:
        parser.error(f"{option}: no such benchmark {', '.join(sorted(unknown))}")
    return [n for n in BENCHMARKS if n in wanted]


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, as the page shows it."""
    if not args.quick and not args.only:
        return "make bench"
    parts = [".venv/bin/python benchmarks/run.py"]
    if args.quick == "all":
        parts.append("--quick")
    elif args.quick:
        parts.append(f"--quick {args.quick}")
    if args.only:
        parts.append(f"--only {args.only}")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
