"""Every line of postbud's own output that the docs quote (``postbud: …``, ``postbud
send: error: …``) is what the command really prints: each is produced here by the
command line it documents, so the docs cannot drift from the code (issue 17)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?:console|text|sh)\n(.*?)^```", re.M | re.S)
OWN = re.compile(r"^postbud(?: [a-z]+)?: .+$", re.M)

SEND = ["-m", "postbud", "send", "--to", "me@example.com", "--subject", "x"]
NO_PASSWORD = "No credentials for me@gmail.com: set POSTBUD_APP_PASSWORD"
# A script whose import of the demo's extras fails, as without them installed.
NO_EXTRAS = textwrap.dedent(
    """
    import sys
    class Missing:
        blocked = ("aiosmtpd", "trustme", "pytest_localserver", "werkzeug", "google.auth",
                   "google", "requests")
        def find_spec(self, name, path=None, target=None):
            if name in self.blocked or name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Missing())
    from postbud.cli import main
    sys.exit(main(["demo"]))
    """
)
CRASH = "import postbud\npostbud.alert_on_crash()\nrows = [{}]\nrows[0]['customer_id']\n"

#: The documented line (its start) -> (argv after the interpreter, environment).
SCENARIOS: dict[str, tuple[list[str], dict[str, str]]] = {
    "postbud: the demo needs the testing and oauth extras": (["-c", NO_EXTRAS], {}),
    "postbud demo: everything below talks to FakeGmail": (["-m", "postbud", "demo"], {}),
    "postbud: the job runs, but its failure cannot be mailed: POSTBUD_USERNAME is missing": (
        ["-m", "postbud", "run", "--to", "oncall@example.com", "--", "sh", "-c", "exit 3"],
        {},
    ),
    "postbud: the job ended with exit status 3; the failure could not be mailed": (
        ["-m", "postbud", "run", "--to", "oncall@example.com", "--", "sh", "-c", "exit 3"],
        {},
    ),
    "postbud: alerts on crash are off: " + NO_PASSWORD: (
        ["-c", CRASH],
        {"POSTBUD_USERNAME": "me@gmail.com"},
    ),
    "postbud: the crash was not mailed: " + NO_PASSWORD: (
        ["-c", CRASH],
        {"POSTBUD_USERNAME": "me@gmail.com"},
    ),
    "postbud: no message 71 in the spool": (
        ["-m", "postbud", "outbox", "purge", "71"],
        {"POSTBUD_USERNAME": "me@gmail.com"},
    ),
    "postbud: --port 587 and --security ssl contradict each other": (
        [*SEND, "--port", "587", "--security", "ssl"],
        {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": "abcdefghijklmnop"},
    ),
    "postbud: --timeout must be a number, got '3O'.": (
        [*SEND, "--timeout", "3O"],
        {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": "abcdefghijklmnop"},
    ),
    "postbud send: error: --app-password is not an option": (
        [*SEND, "--app-password", "abcd efgh ijkl mnop"],
        {},
    ),
}


def documented() -> list[tuple[str, str]]:
    """(page, line) for every line of postbud's own output the docs quote."""
    found = []
    for page in PAGES:
        for block in FENCE.finditer(page.read_text()):
            found += [(page.name, line) for line in OWN.findall(block[1])]
    return found


def scenario(line: str) -> str:
    [key] = [k for k in SCENARIOS if line.startswith(k)] or [""]
    return key


def test_every_documented_line_has_its_command_line() -> None:
    lines = documented()
    assert len(lines) >= len(SCENARIOS)
    missing = [f"{page}: {line}" for page, line in lines if not scenario(line)]
    assert missing == [], "add each to SCENARIOS with the command that prints it"


@pytest.mark.parametrize(("page", "line"), documented())
def test_the_documented_line_is_what_postbud_prints(page: str, line: str, tmp_path: Path) -> None:
    argv, values = SCENARIOS[scenario(line)]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTBUD_", "COV_CORE", "COVERAGE"))
    }
    env.update({"POSTBUD_SPOOL": str(tmp_path / "outbox.sqlite"), **values})
    result = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        input="x\n",
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    printed = result.stdout.splitlines() + result.stderr.splitlines()
    assert line in printed, f"{page}: not printed as documented:\n{result.stderr}"
