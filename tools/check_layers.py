"""Check that imports inside postbud go downward (ARCHITECTURE.md, "Which way imports go").

Tangled imports made the old flat ``src/postbud`` hard to change, and only review kept them
from growing back. This reads (with ``ast``: nothing is imported) every ``.py`` file under
``src/postbud`` and ``integrations/`` and prints ``path:line: message`` for each import that
goes up or sideways between ``LAYERS`` (under ``TYPE_CHECKING`` too, unless listed in
``ALLOWED_FOR_TYPES``), bypasses a package's ``__init__``, takes another module's ``_private``
name, or (integrations) reaches past postbud's public modules; for each import cycle, star
import and module in no layer. Exit status 1 if anything is printed.

Usage: python tools/check_layers.py [ROOT]   (ROOT: the repository, by default)
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

# Top to bottom. A module may import any module of a lower line. Names on one line may not
# import each other. A module belongs to its longest matching name ("entry"), so
# postbud._smtp.transport is in postbud._smtp's; within one entry, imports are free.
LAYERS: list[list[str]] = [
    ["postbud.cli"],  # L8  the command line
    ["postbud.alerts", "postbud.testing"],  # L7
    ["postbud._check"],  # L6
    ["postbud._mailer"],  # L5
    ["postbud._outbox"],  # L4
    ["postbud._smtp"],  # L3
    ["postbud._config"],  # L2
    ["postbud._ready"],  # L1b  a ready email.message.Message (send_message)
    ["postbud._message", "postbud._convert"],  # L1  a message; one setting's value
    ["postbud._mime", "postbud._html"],  # L0c  MIME parts (use _address); HTML (uses _mask)
    # L0b
    ["postbud._address", "postbud._auth", "postbud._oauth", "postbud._mask"],
    # L0a: import nothing of postbud
    ["postbud.errors", "postbud._secret", "postbud._fork", "postbud._version", "postbud._sasl"],
]

# Up or sideways imports allowed under `if TYPE_CHECKING:`, for annotations (runtime imports
# that point up are never allowed). Key: (importer's entry, imported module's entry), both
# as named in LAYERS; value: why the type cannot come from below. Add a line such as
#     ("postbud._config", "postbud._mailer"): "Settings.mailer() is annotated -> Mailer",
ALLOWED_FOR_TYPES: dict[tuple[str, str], str] = {}

# postbud/__init__.py and __main__.py: the façade, above every layer, may import anything.
FACADE = ("postbud", "postbud.__main__")
# Packages whose public (non-underscore) submodules may be imported from outside.
PUBLIC_SUBMODULES = ("postbud.testing",)  # postbud.testing.plugin is a pytest plugin
# What integrations/ may import from postbud (and their public submodules): the public
# packages' __init__ names. postbud.cli for its commands run in process (postbud.cli.outbox),
# so a framework's own command (manage.py postbud_outbox, flask postbud outbox) says and
# does exactly what the command line does.
INTEGRATIONS_MAY_IMPORT = (
    "postbud",
    "postbud.errors",
    "postbud.alerts",
    "postbud.testing",
    "postbud.cli",
)


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # absolute: `from .x import y` in postbud/a.py gives "postbud.x"
    name: str | None  # "y" for `from ... import y`, "*" for a star, None for `import x`
    typing_only: bool  # under `if TYPE_CHECKING:`


def _modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for src/postbud and integrations/."""
    found: dict[str, Path] = {}
    for base, top in ((root / "src", root / "src" / "postbud"), (root / "integrations",) * 2):
        for path in sorted(top.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _imports(tree: ast.Module, package: str) -> list[Import]:
    """Every import in the file, lazy ones in functions included."""
    found: list[Import] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, a.name, None, typing_only) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.extend(Import(node.lineno, module, a.name, typing_only) for a in node.names)
        for sub in ast.iter_child_nodes(node):
            visit(sub, typing_only)

    visit(tree, False)
    return found


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run at import time: the module body, into if/try/with blocks."""
    found: list[ast.stmt] = []
    for node in body:
        found.append(node)
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            blocks = [getattr(node, f, []) for f in ("body", "orelse", "finalbody")]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            for block in blocks:
                found += _top_level(block)
    return found


def _exports(tree: ast.Module) -> set[str]:
    """A package's __all__ (string literals), else its public top-level names."""
    bound: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                is_all = isinstance(target, ast.Name) and target.id == "__all__"
                if is_all and isinstance(node.value, (ast.List, ast.Tuple)):
                    consts = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
                    return {c for c in consts if isinstance(c, str)}
                bound.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return {name for name in bound if not name.startswith("_")}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _entry(module: str) -> str | None:
    if module in FACADE:
        return module
    matches = [e for layer in LAYERS for e in layer if _within(module, e)]
    return max(matches, key=len) if matches else None


def _rank(entry: str) -> int:
    """0 for the top layer, higher further down; the façade is above everything."""
    return next((i for i, layer in enumerate(LAYERS) if entry in layer), -1)


class _Checker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules = _modules(root)
        self.trees = {m: ast.parse(p.read_text("utf-8"), str(p)) for m, p in self.modules.items()}
        inits = (name for name, path in self.modules.items() if path.name == "__init__.py")
        self.packages = sorted(name for name in inits if name.startswith("postbud."))
        self.exports = {package: _exports(self.trees[package]) for package in self.packages}
        self.edges: dict[str, dict[str, int]] = {}  # runtime imports: line of the first
        self.problems: set[tuple[str, int, str]] = set()

    def run(self) -> list[str]:
        for module, tree in self.trees.items():
            in_src = _within(module, "postbud")
            if in_src and _entry(module) is None:
                self.add(module, 1, f"{module} is not in any layer: add it to LAYERS")
            is_init = self.modules[module].name == "__init__.py"
            package = module if is_init else module.rpartition(".")[0]
            for imp in _imports(tree, package):
                if imp.name == "*" and in_src:
                    self.add(module, imp.line, f"from {imp.module} import *: name what you import")
                if _within(imp.module, "postbud"):
                    for message in self.judge(module, imp, in_src):
                        self.add(module, imp.line, message)
        self.find_cycles()
        return [f"{path}:{line}: {message}" for path, line, message in sorted(self.problems)]

    def add(self, module: str, line: int, message: str) -> None:
        path = self.modules[module].relative_to(self.root).as_posix()
        self.problems.add((path, line, message))

    def judge(self, me: str, imp: Import, in_src: bool) -> list[str]:
        target, name = imp.module, None if imp.name == "*" else imp.name
        if name is not None and f"{target}.{name}" in self.modules:
            target, name = f"{target}.{name}", None  # `from postbud import _fork`: a module
        if in_src and not imp.typing_only and target != me and target in self.modules:
            self.edges.setdefault(me, {}).setdefault(target, imp.line)
        if not in_src:
            allowed = target == "postbud" or any(
                _within(target, m) for m in INTEGRATIONS_MAY_IMPORT[1:]
            )
            if not allowed or any(part.startswith("_") for part in target.split(".")):
                listed = ", ".join(INTEGRATIONS_MAY_IMPORT)
                return [f"{me} may import only {listed} from postbud, not {target}"]
        mine, theirs = _entry(me) or me, _entry(target)
        if me in FACADE or mine == theirs:
            return []
        found: list[str] = []
        if in_src and theirs is not None and _entry(me) is not None:
            found += self.direction(me, target, mine, theirs, imp.typing_only)
        package = next((p for p in self.packages if _within(target, p)), None)
        if package is not None and not _within(me, package):
            found += self.surface(package, imp, target, name)
        elif name is not None and _is_private(name):
            found.append(f"{name} is private to {target}")
        return found

    def direction(self, me: str, target: str, mine: str, theirs: str, typing: bool) -> list[str]:
        if _rank(theirs) > _rank(mine):
            return []
        if typing and (mine, theirs) in ALLOWED_FOR_TYPES:
            return []
        up = _rank(theirs) < _rank(mine)
        way = "a higher layer" if up else f"the same layer ({mine} | {theirs})"
        message = f"{me} imports {target}, which is in {way}"
        if typing:
            message += f"; under TYPE_CHECKING that needs {(mine, theirs)!r} in ALLOWED_FOR_TYPES"
        return [message]

    def surface(self, package: str, imp: Import, target: str, name: str | None) -> list[str]:
        if imp.module == package and imp.name is not None:
            if imp.name in self.exports.get(package, set()):
                return []
            if name is not None:
                return [f"{name} is not exported by {package}'s __init__"]
        if target == package:
            return []
        rest = target[len(package) + 1 :]
        public = not any(part.startswith("_") for part in rest.split("."))
        if package in PUBLIC_SUBMODULES and public:
            if name is not None and _is_private(name):
                return [f"{name} is private to {target}"]
            return []
        return [f"import {package}'s public names from {package}, not from its module {rest}"]

    def find_cycles(self) -> None:
        """One shortest cycle through the first module of each tangle (cyclic set)."""
        reach = {module: self.paths_from(module) for module in sorted(self.edges)}
        tangled: set[str] = set()
        for start, paths in reach.items():
            if start in paths and start not in tangled:
                tangled.update(m for m in paths if start in reach.get(m, {}))
                cycle = paths[start]
                self.add(start, self.edges[start][cycle[1]], "import cycle: " + " -> ".join(cycle))

    def paths_from(self, start: str) -> dict[str, list[str]]:
        """Shortest runtime import path from start to each module it reaches (maybe itself)."""
        paths: dict[str, list[str]] = {}
        queue = [[start]]
        while queue:
            path = queue.pop(0)
            for succ in sorted(self.edges.get(path[-1], {})):
                if succ not in paths:
                    paths[succ] = [*path, succ]
                    queue.append(paths[succ])
        return paths


def check(root: Path) -> list[str]:
    """Every violation under root, as "path:line: message" with paths relative to root."""
    return _Checker(root).run()


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    if len(argv) > 1 or not (root / "src" / "postbud").is_dir():
        print(f"usage: check_layers.py [ROOT]  (no src/postbud in {root})", file=sys.stderr)
        return 2
    problems = check(root)
    for problem in problems:
        print(problem)
    count = len(_modules(root))
    if problems:
        print(f"layers: {len(problems)} violation(s) in {count} modules checked")
        return 1
    print(f"layers: {count} modules checked, no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
