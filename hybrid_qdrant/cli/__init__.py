"""``hq``: the command-line shell over the library, one module per command group.

- ``hq``: the typer application, error handling, logging;
- ``options``: every option declared once, with the config key it sets;
- ``jobs``: ``hq ingest``, ``hq evaluate``; ``audit``: ``hq audit``; ``compare``: ``hq compare``;
  ``train``: ``hq train``, ``hq memory``; ``sweep``: ``hq sweep``; ``search``: ``hq search``;
  ``collections``: ``hq collections list / info / delete / alias set / alias delete``.
"""

from __future__ import annotations

from hybrid_qdrant.cli import audit, collections, compare, jobs, search, sweep, train  # noqa: F401  (importing them registers the commands)
from hybrid_qdrant.cli.hq import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
