"""Fixtures of the Flask tests: the test apps (``flask_testapp.py``, ``flask_mail_app.py``)
loaded from their files, their config for a FakeGmail, and a teardown that leaves no
Mailer, worker thread or spool handle behind.

The app modules are loaded by path (``load_module``), not imported: so the Flask-Mail
app can also be loaded with its import line changed, and mypy needs no path for them.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask

from flask_postbud import Postbud, PostbudState
from postbud.testing import FakeGmail

HERE = Path(__file__).parent
_numbers = itertools.count()

AppMaker = Callable[..., Flask]


def load_module(name: str, replace: tuple[str, str] | None = None) -> ModuleType:
    """Load ``<name>.py`` of this folder as a new module (``replace``: one line of its
    source swapped for another first)."""
    source = (HERE / f"{name}.py").read_text()
    if replace is not None:
        old, new = replace
        assert old in source, f"{old!r} is not in {name}.py"
        source = source.replace(old, new)
    unique = f"{name}_{next(_numbers)}"
    spec = importlib.util.spec_from_loader(unique, loader=None, origin=str(HERE / f"{name}.py"))
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(HERE / f"{name}.py")
    sys.modules[unique] = module
    exec(
        compile(source, module.__file__, "exec"), module.__dict__
    )  # our own file, perhaps with one line swapped
    return module


def gmail_config(fake: FakeGmail, **overrides: Any) -> dict[str, Any]:
    """``app.config`` for ``fake`` in POSTBUD_* keys (overrides by postbud name)."""
    values = fake.settings_values(exit_timeout=2)
    values.update(overrides)
    return {f"POSTBUD_{name.upper()}": value for name, value in values.items()}


@pytest.fixture(scope="session", name="load_module")
def _load_module() -> Callable[..., ModuleType]:
    """``load_module(name, replace=None)`` for tests (see the function)."""
    return load_module


@pytest.fixture(scope="session")
def testapp() -> ModuleType:
    """The module ``flask_testapp`` (its ``create_app`` and its one ``postbud``)."""
    return load_module("flask_testapp")


@pytest.fixture
def ext(testapp: ModuleType) -> Postbud:
    """The Postbud object every app of ``testapp`` is registered on."""
    extension = testapp.postbud
    assert isinstance(extension, Postbud)
    return extension


@pytest.fixture
def config_for() -> Callable[..., dict[str, Any]]:
    """``config_for(fake, **overrides)``: app config for a FakeGmail."""
    return gmail_config


@pytest.fixture(autouse=True)
def apps() -> Iterator[list[Flask]]:
    """Apps made by this test. At its end their Mailers are closed, and no outbox
    worker may be left running (nothing leaks into the next test)."""
    made: list[Flask] = []
    yield made
    for app in made:
        state = app.extensions.get("postbud")
        if isinstance(state, PostbudState):
            state.close(2)
    workers = [t for t in threading.enumerate() if t.name == "postbud-outbox" and t.is_alive()]
    assert not workers, f"outbox workers left running: {workers}"


@pytest.fixture
def make_app(testapp: ModuleType, apps: list[Flask]) -> AppMaker:
    """``make_app(config)``: ``testapp.create_app(config)``, closed after the test."""

    def make(config: dict[str, Any] | None = None) -> Flask:
        app = testapp.create_app(config or {})
        assert isinstance(app, Flask)
        apps.append(app)
        return app

    return make


@pytest.fixture
def gmail_app(make_app: AppMaker, fake_gmail: FakeGmail) -> Flask:
    """An app of ``testapp`` that sends to ``fake_gmail`` (not testing: it really sends)."""
    return make_app(gmail_config(fake_gmail))
