"""The public API: every name DESIGN.md fixes, importable where it was, named as public."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import postbud
import postbud.errors

ROOT = Path(__file__).resolve().parent.parent


def test_all_lists_exactly_the_public_names() -> None:
    for name in postbud.__all__:
        assert hasattr(postbud, name), name
    # The other direction: every public class or function postbud's namespace holds is
    # in __all__ (a new one cannot slip in, or out, unnoticed).
    public = {
        name
        for name, value in vars(postbud).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert public <= set(postbud.__all__), public - set(postbud.__all__)
    assert len(postbud.__all__) == len(set(postbud.__all__))


def test_every_error_class_is_importable_from_postbud_too() -> None:
    for name in postbud.errors.__all__:
        assert getattr(postbud, name) is getattr(postbud.errors, name), name
        assert name in postbud.__all__
        assert getattr(postbud.errors, name).__module__ == "postbud.errors"


@pytest.mark.parametrize(
    "name",
    [n for n in postbud.__all__ if inspect.isclass(getattr(postbud, n))],
)
def test_classes_are_named_by_their_public_path(name: str) -> None:
    cls = getattr(postbud, name)
    assert cls.__module__ in ("postbud", "postbud.errors"), cls.__module__


def test_reprs_and_tracebacks_say_postbud_mailer() -> None:
    mailer = postbud.Mailer(username="me@gmail.com", app_password="abcdabcdabcdabcd", spool=None)
    try:
        assert repr(mailer).startswith("<postbud.Mailer me@gmail.com")
        assert f"{type(mailer).__module__}.{type(mailer).__qualname__}" == "postbud.Mailer"
        assert repr(type(mailer)) == "<class 'postbud.Mailer'>"
    finally:
        mailer.close()


def test_adapter_packages_keep_their_import_paths() -> None:
    import postbud.alerts
    import postbud.cli
    import postbud.testing

    assert postbud.alerts.AlertHandler is postbud.AlertHandler
    assert postbud.alerts.alert_on_crash is postbud.alert_on_crash
    assert callable(postbud.cli.main)
    assert {"FakeGmail", "FakeGoogleTokens", "MemoryTransport"} <= set(postbud.testing.__all__)


TYPOS = """
import postbud

postbud.Mailer(usernme="me@gmail.com", app_password="abcdabcdabcdabcd")
postbud.Mailer(username="me@gmail.com", app_password=123)
postbud.AlertHandler(to="x@example.com", usernme="me@gmail.com")
postbud.alert_on_crash(to="x@example.com", daily_limit=[1])
postbud.Mailer(username="me@gmail.com", app_password="abcdabcdabcdabcd", port=465)
"""


@pytest.mark.slow
def test_mypy_catches_misspelt_and_mistyped_settings(tmp_path: Path) -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.skip("mypy is not installed next to this Python")
    script = tmp_path / "typos.py"
    script.write_text(textwrap.dedent(TYPOS))
    result = subprocess.run(
        [mypy, "--strict", "--no-incremental", "--python-version", "3.10", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if ": error:" in line]
    flagged = sorted(int(line.split(":")[1]) for line in lines)
    assert flagged == [4, 5, 6, 7], result.stdout  # not the correct call on line 8
    assert '"usernme"' in result.stdout


def test_public_values_still_pickle_under_their_public_path() -> None:
    import pickle

    settings = postbud.Settings(
        username="me@gmail.com", app_password="abcdabcdabcdabcd", spool=None
    )
    for value in (settings, postbud.Secret("s3cret")):
        assert pickle.loads(pickle.dumps(value)) == value
