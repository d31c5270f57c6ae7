"""django_postbud: postbud for Django (arrives in a later release; this guard comes first).

Importing it without Django installed fails with the pip command that fixes it.
"""

from __future__ import annotations

try:
    import django as _django  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from postbud.errors import MissingDependencyError

    raise MissingDependencyError(
        "django_postbud needs Django: pip install 'postbud[django]'", package="django"
    ) from exc

__all__: list[str] = []
