"""``hq search``: ask a collection questions with the encoder recorded in it (a thin shell over
``hybrid_qdrant.retriever.Retriever``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hybrid_qdrant.cli.hq import app, command, setup_logging
from hybrid_qdrant.cli.options import SEARCH, STORE, with_flags
from hybrid_qdrant.config import read_toml, split_csv
from hybrid_qdrant.errors import ConfigError

SNIPPET_WIDTH = 80


@command(app, "search")
@with_flags(SEARCH, STORE, config_option=True)
def search(
    texts: list[str] = typer.Argument(
        ..., help="One or more questions (each quoted).", show_default=False, metavar="TEXT"
    ),
    lang: str | None = typer.Option(None, "--lang", help="Only passages of this language.", metavar="CODE"),
    langs: str | None = typer.Option(
        None, "--langs", help="Only passages of these languages (de,en).", metavar="CODES"
    ),
    k: int = typer.Option(10, "--k", "-k", help="Hits per question.", metavar="N"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per hit and line."),
    width: int = typer.Option(
        SNIPPET_WIDTH, "--width", help="Characters of passage text in the table.", metavar="N"
    ),
    exact: bool = typer.Option(False, "--exact", help="Exhaustive search (no HNSW approximation)."),
    *,
    config: Path | None,
    overrides: dict[str, Any],
    verbose: bool,
) -> None:
    """Search a collection: the top passages of each question, optionally in given languages.

    The collection's encoder is loaded from what the collection records (model, prefixes, max length);
    --model overrides it and must be the model the collection was built with. The config (--config) is
    an evaluation job's TOML: its [store] and [encoder] tables apply.
    """
    setup_logging(verbose)
    if lang and langs:
        raise ConfigError("give --lang (one language) or --langs (several), not both")
    if k < 1 or width < 1:
        raise ConfigError("--k and --width must be positive")
    from hybrid_qdrant.evaluation.jobs import load_job, store_kwargs
    from hybrid_qdrant.retriever import Retriever

    cfg = load_job(config, overrides)
    store = store_kwargs(cfg.store, cfg.collection)  # every server setting checked before anything loads
    languages = split_csv(langs, "--langs") if langs else None
    name = cfg.collection.name or _only_collection(cfg)
    with Retriever.open(
        name,
        model=cfg.encoder.model if _sets(config, overrides, "encoder", "model") else None,
        adapter=cfg.encoder.adapter,
        device=cfg.encoder.device,
        batch_size=cfg.encoder.batch_size,
        exact=exact,
        settings=cfg.encoder,  # prefixes etc. of --model for a collection that records no encoder
        **store,
    ) as retriever:
        results = retriever.search(texts, lang=lang, langs=languages, k=k)
        empty = not any(results) and retriever.count(lang=lang, langs=languages) == 0
    if empty:
        where = f"in {lang or langs}" if (lang or langs) else "at all"
        typer.echo(f"collection {name} has no passages {where}", err=True)
    for index, (text, hits) in enumerate(zip(texts, results, strict=True)):
        if as_json:
            for hit in hits:
                typer.echo(
                    json.dumps({"query_index": index, "query": text, **hit.as_dict()}, ensure_ascii=False)
                )
        else:
            typer.echo(("\n" if index else "") + f"query {index + 1}: {text}")
            typer.echo(hits_table(hits, width))


def hits_table(hits, width: int = SNIPPET_WIDTH) -> str:
    """rank, score, lang, doc_id and a one-line text snippet per hit, in aligned columns."""
    rows = [("rank", "score", "lang", "doc_id", "text")]
    rows += [
        (str(h.rank), f"{h.score:.4f}", h.lang or "", h.doc_id, snippet(h.text or "", width)) for h in hits
    ]
    if len(rows) == 1:
        return "(no hits)"
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )


def snippet(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters (an ellipsis marks a cut)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def _sets(config: Path | None, overrides: dict[str, Any], section: str, key: str) -> bool:
    """Whether the command line or the config file sets ``[section] key`` (rather than its default)."""
    if f"{section}.{key}" in overrides:
        return True
    table = read_toml(config).get(section) if config is not None else None
    return isinstance(table, dict) and key in table


def _only_collection(cfg) -> str:
    """The collection when the location holds exactly one; ConfigError naming them otherwise."""
    from hybrid_qdrant.evaluation.jobs import open_collection
    from hybrid_qdrant.store.connection import redact_url

    with open_collection(cfg, "hq-admin") as store:
        names = store.collections()
    if len(names) == 1:
        return names[0]
    where = redact_url(cfg.store.url) if cfg.store.url else cfg.store.location
    held = f"it holds {', '.join(names)}" if names else "it holds none"
    raise ConfigError(f"which collection at {where}? pass --collection ({held})")
