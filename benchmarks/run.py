"""Run every benchmark in turn (``make bench``); each prints a Markdown table."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    for name in (
        "bench_build.py",
        "bench_send.py",
        "bench_outbox.py",
        "bench_alerts.py",
        "bench_scale.py",
        "bench_django.py",
        "bench_flask.py",
    ):
        print(f"\n## {name}")
        sys.argv = [name]
        runpy.run_path(str(HERE / name), run_name="__main__")
