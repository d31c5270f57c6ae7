"""tools/check_layers.py: each rule on a tiny synthetic tree, and the script's exit status."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "check_layers.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


layers = _load()

# A tree that follows every rule: down the layers, through packages' __init__, into
# postbud.testing's public modules, with relative, lazy and TYPE_CHECKING imports.
CLEAN = {
    # the façade may import anything in postbud, even a package's module
    "src/postbud/__init__.py": (
        "from ._mailer import Mailer\nfrom ._smtp.transport import hidden\n"
        "__version__ = '1'\n__all__ = ['Mailer']\n"
    ),
    "src/postbud/__main__.py": "from .cli import main\n",
    "src/postbud/errors.py": "class PostbudError(Exception): ...\n",
    "src/postbud/_message.py": "from .errors import PostbudError\ndef _size_check() -> None: ...\n",
    "src/postbud/_config.py": "from postbud import _message\n",
    "src/postbud/_smtp/__init__.py": "from .transport import translate\n__all__ = ['translate']\n",
    "src/postbud/_smtp/transport.py": (
        "from .._message import Envelope\nfrom . import _codes\n"
        "def translate() -> None: ...\nhidden = 1\n"
    ),
    "src/postbud/_smtp/_codes.py": "from ..errors import PostbudError\n",
    "src/postbud/_mailer.py": (
        "from typing import TYPE_CHECKING\nfrom ._config import Settings\n"
        "from ._smtp import translate\n"
        "if TYPE_CHECKING:\n    from .errors import PostbudError\n"
    ),
    "src/postbud/alerts.py": "from postbud._mailer import Mailer\n",
    "src/postbud/testing/__init__.py": "from ._fake import FakeGmail\n",
    "src/postbud/testing/_fake.py": "from postbud._mailer import Mailer\n",
    "src/postbud/testing/plugin.py": "from . import FakeGmail\n",
    "src/postbud/cli.py": (
        "import postbud.testing.plugin\nfrom postbud.alerts import AlertHandler\n"
        "def demo() -> None:\n    from postbud.testing import FakeGmail, plugin\n"
    ),
    "integrations/django_postbud/__init__.py": (
        "import django\nfrom postbud import Mailer, __version__\nfrom postbud.errors import X\n"
        "from postbud.testing import FakeGmail\n"
    ),
}


def make(root: Path, changes: dict[str, str | None] | None = None) -> Path:
    """Write the clean tree under root with changes (a file's text; None leaves it out)."""
    for name, text in {**CLEAN, **(changes or {})}.items():
        if text is not None:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return root


def test_a_tree_that_follows_the_layers_passes(tmp_path: Path) -> None:
    assert layers.check(make(tmp_path)) == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "src/postbud/_fork.py",
            "def lazy() -> None:\n    from postbud.cli import demo\n",
            "src/postbud/_fork.py:2: postbud._fork imports postbud.cli, which is in a higher layer",
        ),
        (
            "src/postbud/_smtp/_extra.py",
            "from .. import alerts\n",
            "src/postbud/_smtp/_extra.py:1: postbud._smtp._extra imports postbud.alerts,"
            " which is in a higher layer",
        ),
        (
            "src/postbud/_secret.py",
            "from . import __version__\n",
            "src/postbud/_secret.py:1: postbud._secret imports postbud, which is in a higher layer",
        ),
    ],
    ids=["lazy", "relative", "facade"],
)
def test_an_import_up_is_reported(tmp_path: Path, name: str, text: str, expected: str) -> None:
    assert layers.check(make(tmp_path, {name: text})) == [expected]


def test_an_import_sideways_within_a_layer_is_reported(tmp_path: Path) -> None:
    root = make(tmp_path, {"src/postbud/alerts.py": "from postbud.testing import FakeGmail\n"})
    assert layers.check(root) == [
        "src/postbud/alerts.py:1: postbud.alerts imports postbud.testing,"
        " which is in the same layer (postbud.alerts | postbud.testing)"
    ]


@pytest.mark.parametrize("guard", ["TYPE_CHECKING", "typing.TYPE_CHECKING"])
def test_type_checking_imports_up_need_the_allow_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guard: str
) -> None:
    # _mailer imports _config at runtime: the import back is no cycle, being for types only.
    head = "import typing\nfrom typing import TYPE_CHECKING\n"
    text = f"{head}if {guard}:\n    from ._mailer import X\n"
    root = make(tmp_path, {"src/postbud/_config.py": text})
    assert layers.check(root) == [
        "src/postbud/_config.py:4: postbud._config imports postbud._mailer, which is in a higher"
        " layer; under TYPE_CHECKING that needs ('postbud._config', 'postbud._mailer')"
        " in ALLOWED_FOR_TYPES"
    ]
    allowed = {("postbud._config", "postbud._mailer"): "Settings.mailer() returns a Mailer"}
    monkeypatch.setattr(layers, "ALLOWED_FOR_TYPES", allowed)
    assert layers.check(root) == []


def test_the_allow_list_never_allows_a_runtime_import_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layers, "ALLOWED_FOR_TYPES", {("postbud._fork", "postbud.cli"): "x"})
    root = make(tmp_path, {"src/postbud/_fork.py": "from postbud.cli import demo\n"})
    assert layers.check(root) == [
        "src/postbud/_fork.py:1: postbud._fork imports postbud.cli, which is in a higher layer"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from ._smtp import hidden\n", "hidden is not exported by postbud._smtp's __init__"),
        (
            "from postbud.testing import _helper\n",
            "_helper is not exported by postbud.testing's __init__",
        ),
        (
            "from ._smtp.transport import translate\n",
            "import postbud._smtp's public names from postbud._smtp, not from its module transport",
        ),
        (
            "import postbud._smtp.transport\n",
            "import postbud._smtp's public names from postbud._smtp, not from its module transport",
        ),
        (
            "from postbud._smtp import transport\n",
            "import postbud._smtp's public names from postbud._smtp, not from its module transport",
        ),
        (
            "from postbud.testing import _fake\n",
            "import postbud.testing's public names from postbud.testing, not from its module _fake",
        ),
    ],
    ids=["name", "name-no-all", "from-module", "import-module", "module-as-name", "testing"],
)
def test_only_a_packages_exports_may_be_imported_from_outside(
    tmp_path: Path, text: str, expected: str
) -> None:
    root = make(tmp_path, {"src/postbud/cli.py": text})
    assert layers.check(root) == [f"src/postbud/cli.py:1: {expected}"]


def test_a_private_name_of_another_module_is_reported(tmp_path: Path) -> None:
    root = make(tmp_path, {"src/postbud/_config.py": "from ._message import _size_check\n"})
    assert layers.check(root) == [
        "src/postbud/_config.py:1: _size_check is private to postbud._message"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "from postbud._mailer import Mailer\n",
            "flask_postbud may import only postbud, postbud.errors, postbud.alerts,"
            " postbud.testing, postbud.cli from postbud, not postbud._mailer",
        ),
        ("from postbud import _secret_sauce\n", "_secret_sauce is private to postbud"),
    ],
    ids=["private-module", "private-name"],
)
def test_integrations_import_only_public_postbud(tmp_path: Path, text: str, expected: str) -> None:
    root = make(tmp_path, {"integrations/flask_postbud/__init__.py": "import flask\n" + text})
    assert layers.check(root) == [f"integrations/flask_postbud/__init__.py:2: {expected}"]


def test_a_cycle_within_one_package_is_reported(tmp_path: Path) -> None:
    changes: dict[str, str | None] = {
        "src/postbud/cli.py": None,
        "src/postbud/cli/__init__.py": "from ._outbox import outbox\n",
        "src/postbud/cli/_outbox.py": "def outbox() -> None:\n    from . import main\n",
    }
    assert layers.check(make(tmp_path, changes)) == [
        "src/postbud/cli/__init__.py:1: import cycle:"
        " postbud.cli -> postbud.cli._outbox -> postbud.cli"
    ]


def test_a_module_in_no_layer_and_a_star_import_are_reported(tmp_path: Path) -> None:
    root = make(tmp_path, {"src/postbud/_spool.py": "\n\nfrom .errors import *\n"})
    assert layers.check(root) == [
        "src/postbud/_spool.py:1: postbud._spool is not in any layer: add it to LAYERS",
        "src/postbud/_spool.py:3: from postbud.errors import *: name what you import",
    ]


def test_the_script_fails_on_a_violating_import(tmp_path: Path) -> None:
    clean = make(tmp_path / "clean")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(clean)], capture_output=True, text=True, check=False
    )
    assert (run.returncode, run.stdout) == (0, "layers: 15 modules checked, no violation\n")

    bad = make(tmp_path / "bad", {"src/postbud/_fork.py": "\nfrom ._config import Settings\n"})
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        "src/postbud/_fork.py:2: postbud._fork imports postbud._config, which is in a higher layer",
        "layers: 1 violation(s) in 16 modules checked",
    ]


def test_the_real_tree_keeps_the_layers() -> None:
    root = Path(__file__).resolve().parent.parent
    assert layers.check(root) == []
