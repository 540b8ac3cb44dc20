"""``hq ingest`` and ``hq evaluate``: the two jobs, each a call of ``hybrid_qdrant.evaluation.jobs``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from hybrid_qdrant.cli.hq import app, command, setup_logging
from hybrid_qdrant.cli.options import (
    ALIAS,
    BENCHMARK,
    COLLECTION,
    ENCODER,
    EVALUATE,
    SERVER_COLLECTION,
    STORE,
    with_flags,
)


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="", disable=not sys.stderr.isatty(), leave=False)


def _echo_loader_skips(benchmark) -> None:
    """After a successful run: what the loader left out, and the first bad records in skip mode."""
    for reason, count in benchmark.skipped.items():
        typer.echo(f"loader skipped {count}: {reason.replace('_', ' ')}")
    for line in benchmark.skipped_examples:
        typer.echo(f"  {line}")


@command(app, "ingest")
@with_flags(BENCHMARK, ENCODER, STORE, COLLECTION, ALIAS, SERVER_COLLECTION)
def ingest(config: Path | None, overrides: dict[str, Any], verbose: bool) -> None:
    """Encode a benchmark's passages into a Qdrant collection (idempotent; resumes where it stopped).

    The config is an evaluation job's TOML (tables [benchmark], [encoder], [cache], [store],
    [collection]); --set section.key=value and the flags override it.
    """
    setup_logging(verbose)
    from hybrid_qdrant.evaluation.jobs import ingest_job, load_job

    cfg = load_job(config, overrides)
    with _progress(None, "passages") as bar:
        done = ingest_job(cfg, progress=bar.update)
    stats = done.stats
    typer.echo(
        f"collection {done.collection}: {done.points} points ({stats.encoded} written, "
        f"{stats.already_stored} already stored, {stats.replaced} replaced, {sum(stats.skipped.values())} "
        f"skipped) in {stats.seconds:.1f} s"
    )
    if done.reindex is not None:
        previous = done.reindex.previous
        kept = f"; {previous} kept (hq collections delete {previous})" if previous else ""
        typer.echo(f"alias {done.reindex.alias} -> {done.collection}{kept}")
    for line in stats.skipped_examples:
        typer.echo(f"  skipped {line}")
    _echo_loader_skips(done.benchmark)


@command(app, "evaluate")
@with_flags(BENCHMARK, ENCODER, STORE, COLLECTION, SERVER_COLLECTION, EVALUATE)
def evaluate(config: Path | None, overrides: dict[str, Any], verbose: bool) -> None:
    """Evaluate an encoder: mono, cross and multilingual retrieval through Qdrant (ingests what is missing).

    The config is an evaluation job's TOML (tables [benchmark], [encoder], [cache], [store],
    [collection], [evaluate], [report]: see eval/xquad-r.toml); --set section.key=value and the flags
    override it.
    """
    setup_logging(verbose)
    from hybrid_qdrant.evaluation.jobs import evaluate_job, load_job, model_name
    from hybrid_qdrant.evaluation.report import markdown, report_dict

    cfg = load_job(config, overrides)
    with _progress(None, "passages") as bar, _progress(None, "settings") as slices:
        run = evaluate_job(cfg, ingest_progress=bar.update, slice_progress=lambda _: slices.update(1))
    typer.echo(markdown(report_dict(run.result, model_name(cfg), run.details)))
    if run.report:
        typer.echo("wrote " + ", ".join(str(p) for p in run.report.values()))
    _echo_loader_skips(run.benchmark)
