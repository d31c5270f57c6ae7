"""The distribution: what the wheel ships, what importing postbud loads, extras' guards."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import postbud

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_wheel_holds_exactly_the_three_packages(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    [wheel] = tmp_path.glob("postbud-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"postbud", "django_postbud", "flask_postbud"}
    for package in tops:
        assert f"{package}/py.typed" in names
    assert "postbud/testing/plugin.py" in names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Python: >=3.10" in text
    for extra in ("oauth", "django", "flask", "testing", "dev"):
        assert f"Provides-Extra: {extra}" in text
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "postbud = postbud.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    # The MIT licence the metadata declares ships as a file, and the version is the one
    # of src/postbud/_version.py (its only place).
    [license_file] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert "MIT License" in zipfile.ZipFile(wheel).read(license_file).decode()
    assert "License-Expression: MIT" in text or "License: MIT" in text
    from postbud._version import __version__

    assert f"Version: {__version__}\n" in text
    assert wheel.name.startswith(f"postbud-{__version__}-")


def test_import_postbud_stays_light() -> None:
    result = run_python(
        "import sys, postbud, postbud.testing\n"
        "heavy = ['google.auth', 'requests', 'django', 'flask', 'aiosmtpd', 'trustme',"
        " 'pytest_localserver']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("package", "framework"), [("django_postbud", "django"), ("flask_postbud", "flask")]
)
def test_integration_without_its_framework_names_the_extra(package: str, framework: str) -> None:
    result = run_python(
        f"import sys; sys.modules[{framework!r}] = None\n"
        "from postbud.errors import MissingDependencyError\n"
        f"try:\n    import {package}\n"
        "except MissingDependencyError as exc:\n"
        "    print(type(exc).__mro__[1].__name__, isinstance(exc, ImportError), exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"ConfigurationError True {package} needs {framework.capitalize()}: "
        f"pip install 'postbud[{framework}]'"
    )


def test_integrations_import_with_their_framework() -> None:
    import django_postbud
    import flask_postbud

    assert django_postbud.__all__ == ["AdminAlertHandler", "EmailBackend"]
    assert flask_postbud.__all__ == [
        "Attachment",
        "Connection",
        "ExtensionError",
        "Mail",
        "Message",
        "Postbud",
        "PostbudState",
    ]


def test_public_api_is_pinned() -> None:
    assert sorted(postbud.__all__) == sorted(
        [
            "AlertHandler",
            "AppPassword",
            "AuthenticationError",
            "CheckReport",
            "CheckStep",
            "ConfigurationError",
            "Credentials",
            "DeliveryError",
            "Envelope",
            "InvalidMessageError",
            "Mailer",
            "MessageRefusedError",
            "MissingDependencyError",
            "OAuth2",
            "PostbudError",
            "Probe",
            "QuotaExceededError",
            "RecipientsRefusedError",
            "RefusedError",
            "SMTPTimeoutError",
            "SMTPTransport",
            "Secret",
            "SendResult",
            "SenderRefusedError",
            "Settings",
            "SettingsKwargs",
            "TokenRefreshError",
            "Transport",
            "TransportError",
            "__version__",
            "alert_on_crash",
            "diagnose",
            "errors",
        ]
    )
    for name in postbud.__all__:
        assert hasattr(postbud, name)


def test_error_tree() -> None:
    e = postbud.errors
    assert issubclass(e.ConfigurationError, ValueError)
    assert issubclass(e.MissingDependencyError, (e.ConfigurationError, ImportError))
    assert issubclass(e.InvalidMessageError, ValueError)
    assert not issubclass(e.InvalidMessageError, e.DeliveryError)
    assert not issubclass(e.ConfigurationError, e.DeliveryError)
    assert issubclass(e.TokenRefreshError, e.AuthenticationError)
    assert issubclass(e.TransportError, (e.DeliveryError, ConnectionError))
    assert issubclass(e.SMTPTimeoutError, (e.TransportError, TimeoutError))
    for cls in (e.SenderRefusedError, e.RecipientsRefusedError, e.MessageRefusedError):
        assert issubclass(cls, e.RefusedError)
    assert issubclass(e.QuotaExceededError, e.DeliveryError)
    assert e.TransportError("x").retryable and not e.RefusedError("x").retryable
    assert str(e.TransportError("down", hint="Check it.")) == "down Check it."


def test_missing_testing_extra_is_named() -> None:
    result = run_python(
        "import sys; sys.modules['aiosmtpd'] = None; sys.modules['aiosmtpd.smtp'] = None\n"
        "import postbud.testing\n"
        "try:\n    postbud.testing.FakeGmail\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    assert "pip install 'postbud[testing]'" in result.stdout, result.stderr


def test_import_postbud_loads_the_rest_on_first_use() -> None:
    # import postbud is cheaper than `import smtplib, ssl, logging` (benchmarks/
    # bench_scale.py measures it): the heavy modules load when a name needs them.
    code = (
        "import sys, postbud\n"
        "heavy = ['sqlite3', 'email.policy', 'difflib', 'inspect', 'smtplib', 'json']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(postbud.Mailer.__module__, postbud.AlertHandler.__name__,"
        " 'sqlite3' in sys.modules)\n"
        "from postbud import *\n"
        "print(Settings.__module__)\n"
    )
    # Without coverage's start-up hook (pytest-cov starts it in subprocesses too, and
    # coverage imports sqlite3, json and inspect itself).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "postbud AlertHandler True", "postbud"]
    missing = run_python("import postbud; postbud.Mailr")
    assert "module 'postbud' has no attribute 'Mailr'" in missing.stderr
