"""flask_postbud: postbud for Flask (arrives in a later release; this guard comes first).

Importing it without Flask installed fails with the pip command that fixes it.
"""

from __future__ import annotations

try:
    import flask as _flask  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from postbud.errors import MissingDependencyError

    raise MissingDependencyError(
        "flask_postbud needs Flask: pip install 'postbud[flask]'", package="flask"
    ) from exc

__all__: list[str] = []
