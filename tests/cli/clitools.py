"""What the command-line tests share: a clean environment and the command run in a
fresh interpreter (``python -m postbud``), as a user's shell or cron runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The test's environment without postbud's or coverage's variables, plus ``values``
    (a spool in ``tmp_path``; 100 columns, where argparse wraps its usage and help)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTBUD_", "COV_CORE", "COVERAGE"))
    }
    env["POSTBUD_SPOOL"] = str(tmp_path / "outbox.sqlite")
    env["COLUMNS"] = "100"
    env.update(values)
    return env


def postbud(
    env: dict[str, str], *args: str, stdin: str | None = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m postbud ARGS`` with ``env``; its exit status, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "postbud", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
        check=False,
    )


def python_file(env: dict[str, str], path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Write ``code`` to ``path`` and run it as a script in a fresh interpreter."""
    path.write_text(code)
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
