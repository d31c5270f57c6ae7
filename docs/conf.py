"""Sphinx configuration of postbud's documentation site (``make docs``).

The pages stay GitHub-flavoured Markdown that reads well on GitHub and that
tests/docs/test_docs.py runs; Sphinx reads them with MyST, so anything only the site
needs goes into ```` ```{directive} ```` fences, which that test leaves alone. The build
works offline (no intersphinx, no remote images) and ``make docs`` turns every warning
into an error, so a broken link, a missing anchor or an API name left out of the
reference fails it.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import os
import re
import sys
import warnings
from typing import Any

from pygments.lexers.shell import BashLexer
from sphinx.application import Sphinx
from sphinx.deprecation import RemovedInSphinx10Warning
from sphinx.util import logging

import postbud

# postbud's lazy attributes (PEP 562) name a class by its public path (``__module__ =
# "postbud"``) when it is first looked up there. Look them all up now, so every type hint
# in the reference says and links ``postbud.Settings``, whichever page or class autodoc
# happens to meet first.
for _name in postbud.__all__:
    getattr(postbud, _name)

project = "postbud"
author = "The postbud developers"
copyright = "The postbud developers"
release = postbud.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    # napoleon before the type hints: it turns the Google-style sections into fields
    # that sphinx-autodoc-typehints then gives their types.
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",
]

root_doc = "index"
source_suffix = {".md": "markdown"}
# docs/examples holds tested files and docs/_generated what `make bench` writes (the
# benchmark tables): the pages include them; they are not pages of their own.
exclude_patterns = ["examples", "_generated", "images", "_build", "Thumbs.db", ".DS_Store"]

# -- MyST ---------------------------------------------------------------------------
# The anchors GitHub gives headings (`[x](page.md#some-heading)`), down to ####.
myst_heading_anchors = 4
# No syntax extensions (colon fences, definition lists...): GitHub would show them as
# text, and a page must read the same there as on the site.
myst_enable_extensions: list[str] = []

# -- HTML ---------------------------------------------------------------------------
html_theme = "furo"
html_title = f"postbud {release}"
html_static_path: list[str] = []
html_copy_source = False
html_show_sourcelink = False
pygments_style = "friendly"
pygments_dark_style = "monokai"

# -- autodoc, napoleon, type hints --------------------------------------------------
autodoc_member_order = "bysource"
# The bases are shown where they say something (the exceptions, the logging handlers,
# the protocols): docs/api.md asks for them class by class.
autodoc_default_options = {"members": True}
# The hints go into the parameter list, not the signature, where they would be long.
autodoc_typehints = "description"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
typehints_document_rtype = True
typehints_use_rtype = False
always_document_param_types = True
typehints_defaults = "comma"
# A section napoleon does not know by name: the pytest plugin's fixtures.
napoleon_custom_sections = [("Fixtures", "params_style")]

# -- warnings -----------------------------------------------------------------------
# sphinx-autodoc-typehints 3.6 calls an API Sphinx 10 will remove; a Python warning on
# stderr, not a Sphinx one, printed once per docstring. Nothing to do here but wait.
warnings.filterwarnings(
    "ignore", category=RemovedInSphinx10Warning, module="sphinx_autodoc_typehints"
)

# `make docs` runs with -n (nitpicky): every cross-reference must resolve. Without
# intersphinx (the build is offline) the standard library's and the frameworks' names
# have no target here, so those are exempt; a postbud name that does not resolve is
# still an error.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!(postbud|django_postbud|flask_postbud)\b).*"),
]
# Private classes that public signatures mention (a return type, a parameter's type)
# without making them public: shown by name, not linked. A new one is an error until it
# is either documented or listed here.
nitpick_ignore = [
    ("py:class", "postbud._outbox.retry.RetryPolicy"),
    ("py:class", "postbud._outbox.outbox.Outbox"),
    ("py:class", "postbud._outbox.stats.Stats"),
    ("py:class", "postbud.alerts._policy.FpState"),
    ("py:class", "flask_postbud._message._Sender"),
]

#: The public API (what each module's ``__all__`` lists) that docs/api.md must
#: document, module -> names left out on purpose.
PUBLIC = {
    "postbud": {"__version__", "errors"},
    "postbud.alerts": set(),
    "postbud.testing": {"replies"},
    "django_postbud": set(),
    "flask_postbud": set(),
}

logger = logging.getLogger(__name__)


def check_api_reference(app: Sphinx, env: Any) -> None:
    """Warn (an error under ``-W``) for a public name docs/api.md does not document.

    A name counts as documented when the object it names is, under any of its public
    names: ``postbud.alerts.AlertHandler`` is ``postbud.AlertHandler``.
    """
    documented = {id(obj) for obj in map(resolve, env.get_domain("py").objects) if obj}
    for module, skipped in PUBLIC.items():
        namespace = importlib.import_module(module)
        for name in sorted(set(namespace.__all__) - skipped):
            if id(getattr(namespace, name)) not in documented:
                logger.warning("docs/api.md does not document %s.%s", module, name)


def resolve(dotted: str) -> object | None:
    """The object a documented name stands for, or None (a method, an attribute)."""
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None) if module else None
    except ImportError:
        return None


def guarded_imports(app: Sphinx, what: str, name: str, obj: Any, *args: Any) -> None:
    """Make the names a function's annotations use resolvable in its globals.

    sphinx-autodoc-typehints runs the ``if TYPE_CHECKING:`` imports of the module
    ``obj.__module__`` names, but postbud's public objects say ``__module__ = "postbud"``
    while they are defined in private modules: run those of the module that defines
    the function instead, in its globals. The type aliases of ``postbud._message`` spell
    ``"os.PathLike[str]"`` as a string, which ``get_type_hints`` evaluates in the globals
    of the function that uses the alias: those get ``os`` too.
    """
    namespace = getattr(inspect.unwrap(obj), "__globals__", None)
    if namespace is None or id(namespace) in _resolved:
        return
    _resolved.add(id(namespace))
    module = sys.modules.get(namespace.get("__name__", ""))
    if module is None or not module.__name__.startswith(OWN):
        return
    namespace.setdefault("os", os)
    tree = ast.parse(inspect.getsource(module))
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for statement in node.body:
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    with contextlib.suppress(ImportError):
                        exec(  # noqa: S102 - the module's own import lines
                            compile(ast.Module([statement], []), module.__name__, "exec"),
                            namespace,
                        )


#: A Google-style section header with a note: ``Attributes (all reset by reset()):``.
NOTED_SECTION = re.compile(r"^(?P<indent>\s*)(?P<name>[A-Z]\w*) \((?P<note>.+)\):\s*$")


def noted_sections(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Give napoleon a header it knows: the note becomes a sentence before the section.

    Napoleon takes ``Name:`` as a section header only when the name is all words, so a
    docstring's ``Attributes (all reset by ``reset()``):`` would stay text.
    """
    rewritten = []
    for line in lines:
        match = NOTED_SECTION.match(line)
        if match and match["name"].lower() in ("attributes", "args", "arguments", "fixtures"):
            indent, note = match["indent"], match["note"][0].upper() + match["note"][1:]
            rewritten += [f"{indent}{note}.", "", f"{indent}{match['name']}:"]
        else:
            rewritten.append(line)
    lines[:] = rewritten


OWN = ("postbud", "django_postbud", "flask_postbud")
_resolved: set[int] = set()


def setup(app: Sphinx) -> dict[str, Any]:
    """Hook the API reference check and the type hints' imports into the build."""
    app.connect("env-check-consistency", check_api_reference)
    # Before sphinx-autodoc-typehints (priority 500) reads the annotations.
    app.connect("autodoc-process-signature", guarded_imports, priority=100)
    app.connect("autodoc-process-docstring", guarded_imports, priority=100)
    # Before napoleon (priority 500) reads the sections.
    app.connect("autodoc-process-docstring", noted_sections, priority=100)
    # docs/scripts.md shows a crontab; Pygments has no lexer for one.
    app.add_lexer("crontab", BashLexer)
    return {"parallel_read_safe": True}
