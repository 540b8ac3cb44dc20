"""``hq collections``: list, inspect, delete and alias collections (never implicit)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from hybrid_qdrant.cli.hq import app, command
from hybrid_qdrant.cli.options import STORE, with_flags
from hybrid_qdrant.errors import HQError

collections_app = typer.Typer(
    help="List, inspect, delete and alias collections (never implicit).", no_args_is_help=True
)
app.add_typer(collections_app, name="collections")


class _AliasGroup(TyperGroup):
    """``alias ALIAS NAME`` (no subcommand) means ``alias set ALIAS NAME``, as before ``delete`` existed."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["set", *args]
        return super().resolve_command(ctx, args)


alias_app = typer.Typer(
    cls=_AliasGroup,
    help="Point an alias at a collection (alias set ALIAS NAME, or alias ALIAS NAME) or remove it "
    "(alias delete ALIAS).",
    no_args_is_help=True,
)
collections_app.add_typer(alias_app, name="alias")


def _open_location(config: Path | None, overrides: dict[str, Any], name: str = "hq-admin"):
    """The store for collection ``name`` at the job's location or server (for admin calls; no collection
    is created)."""
    from hybrid_qdrant.evaluation.jobs import load_job, open_collection

    return open_collection(load_job(config, overrides), name)


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


@command(collections_app, "info")
@with_flags(STORE)
def collections_details(
    name: str = typer.Argument(..., help="Collection or alias.", metavar="NAME"),
    as_json: bool = typer.Option(False, "--json", help="Print the details as JSON."),
    *,
    config: Path | None,
    overrides: dict[str, Any],
    verbose: bool,
) -> None:
    """Points per language, vectors, the encoder recorded, payload layout, HNSW / quantization, aliases."""
    with _open_location(config, overrides, name) as store:
        summary = details_summary(store.details())
    if as_json:
        typer.echo(json.dumps(summary, indent=1, ensure_ascii=False))
        return
    shown = {k: v for k, v in summary.items() if v not in (None, "", [], {})}
    width = max(map(len, shown)) + 2
    for key, value in shown.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        typer.echo(f"{key:<{width}}{text}")


def details_summary(details) -> dict[str, Any]:
    """``CollectionDetails`` as the plain, ordered values ``collections info`` prints."""
    from hybrid_qdrant.encoding.source import EncoderSource
    from hybrid_qdrant.store.payload_compat import formats_of

    spec = details.spec
    source: dict[str, Any] | str | None = None
    if spec is not None and spec.source:
        try:
            source = EncoderSource.from_json(spec.source).__dict__
        except HQError:
            source = spec.source
    per_language = details.per_language
    if per_language is not None:
        points = f"{details.points} ({', '.join(f'{k} {v}' for k, v in per_language.items())})"
    else:
        points = f"{'?' if details.points is None else details.points} (per language: unavailable)"
    vectors = None
    if spec is not None:
        vector = f"'{spec.vector_name}'" if spec.vector_name else "unnamed"
        vectors = f"{spec.dim}-d, {spec.distance}, {vector} vector"
    payload = None
    if details.sample_payload is not None:
        payload = " + ".join(["hq", *formats_of(details.sample_payload)])
        payload += f" (keys: {', '.join(sorted(details.sample_payload))})"
    summary = {
        "collection": details.name,
        "aliases": ", ".join(details.aliases) or "none",
        "points": points,
        "vectors": vectors,
        "encoder": source if source is not None else "not recorded (search needs --model)",
        "fingerprint": spec.encoder if spec is not None else None,
        "payload": payload,
    }
    for key, value in details.index.items():
        summary[f"{key}_config" if key in summary else key] = value
    summary["note"] = details.note
    return summary


@command(alias_app, "set")
@with_flags(STORE)
def collections_alias(
    alias: str = typer.Argument(..., help="Alias name.", metavar="ALIAS"),
    collection: str = typer.Argument(..., help="Collection it should point to.", metavar="NAME"),
    *,
    config: Path | None,
    overrides: dict[str, Any],
    verbose: bool,
) -> None:
    """Point an alias at a collection atomically: a re-index's switch, or its rollback by hand."""
    with _open_location(config, overrides) as store:
        store.set_alias(alias, collection)
    typer.echo(f"alias {alias} -> {collection}")


@command(alias_app, "delete")
@with_flags(STORE)
def collections_alias_delete(
    alias: str = typer.Argument(..., help="Alias to remove (its collection stays).", metavar="ALIAS"),
    *,
    config: Path | None,
    overrides: dict[str, Any],
    verbose: bool,
) -> None:
    """Remove an alias; the collection it pointed to is kept."""
    with _open_location(config, overrides) as store:
        target = store.aliases().get(alias)
        if not store.delete_alias(alias):
            raise HQError(f"no alias {alias!r}")
    typer.echo(f"deleted alias {alias} (collection {target} kept)")
