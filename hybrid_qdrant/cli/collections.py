"""``hq collections``: list, delete and alias collections (never implicit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hybrid_qdrant.cli.hq import app, command
from hybrid_qdrant.cli.options import STORE, with_flags
from hybrid_qdrant.errors import HQError

collections_app = typer.Typer(
    help="List, delete and alias collections (never implicit).", no_args_is_help=True
)
app.add_typer(collections_app, name="collections")


def _open_location(config: Path | None, overrides: dict[str, Any]):
    """The store at the job's location or server (for admin calls; no collection is created)."""
    from hybrid_qdrant.evaluation.jobs import load_job, open_collection

    return open_collection(load_job(config, overrides), "hq-admin")


@command(collections_app, "list")
@with_flags(STORE)
def collections_list(config: Path | None, overrides: dict[str, Any], verbose: bool) -> None:
    """Collections with their point counts, dimension and aliases (embedded: read-only, opens none)."""
    from hybrid_qdrant.store import collections_info

    with _open_location(config, overrides) as store:
        for info in collections_info(store):
            typer.echo(
                f"{info.name}\t{'?' if info.points is None else info.points} points\tdim {info.dim or '?'}"
                + (f"\taliases: {', '.join(info.aliases)}" if info.aliases else "")
                + (f"\t({info.note})" if info.note else "")
            )


@command(collections_app, "delete")
@with_flags(STORE)
def collections_delete(
    name: str = typer.Argument(..., help="Collection to drop."),
    yes: bool = typer.Option(False, "--yes", help="Confirm: the collection and its points are dropped."),
    *,
    config: Path | None,
    overrides: dict[str, Any],
    verbose: bool,
) -> None:
    """Drop a collection (refused while an alias points to it; needs --yes)."""
    if not yes:
        raise HQError(f"refusing to delete collection {name!r} without --yes")
    with _open_location(config, overrides) as store:
        if not store.delete_collection(name):
            raise HQError(f"no collection {name!r}")
    typer.echo(f"deleted {name}")


@command(collections_app, "alias")
@with_flags(STORE)
def collections_alias(
    alias: str = typer.Argument(..., help="Alias name."),
    collection: str = typer.Argument(..., help="Collection it should point to."),
    *,
    config: Path | None,
    overrides: dict[str, Any],
    verbose: bool,
) -> None:
    """Point an alias at a collection atomically (e.g. to roll back a re-index)."""
    with _open_location(config, overrides) as store:
        store.set_alias(alias, collection)
    typer.echo(f"alias {alias} -> {collection}")
