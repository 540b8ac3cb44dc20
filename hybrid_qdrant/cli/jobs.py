"""``hq ingest`` and ``hq evaluate``: the two jobs, each a call of ``hybrid_qdrant.evaluation.jobs``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def progress_bars(show: bool = True) -> Iterator[Any]:
    """A ``JobProgress`` that draws a labelled bar per phase on stderr (when it is a terminal) and prints
    notes (such as what the embedding cache reused) as lines; the bars close with the block. With
    ``show`` off (the other processes of a launch), a silent one."""
    from tqdm import tqdm

    from hybrid_qdrant.evaluation.jobs import JobProgress  # heavy: imported when a job runs, not for --help

    if not show:
        yield JobProgress()
        return

    class Bars(JobProgress):
        def __init__(self) -> None:
            self.bars: dict[str, Any] = {}

        def start(self, phase: str, total: int | None) -> None:
            if phase in self.bars:
                self.bars.pop(phase).close()
            self.bars[phase] = tqdm(
                total=total, desc=phase, unit="", disable=not sys.stderr.isatty(), leave=False
            )

        def advance(self, phase: str, n: int = 1) -> None:
            if phase in self.bars:
                self.bars[phase].update(n)

        def grow(self, phase: str, n: int) -> None:
            if phase in self.bars:
                bar = self.bars[phase]
                bar.total = (bar.total or 0) + n
                bar.refresh()

        def note(self, message: str) -> None:
            typer.echo(message, err=True)

    bars = Bars()
    try:
        yield bars
    finally:
        for bar in bars.bars.values():
            bar.close()


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

    More processes: --workers N on one machine, or torchrun --nproc-per-node N -m hybrid_qdrant.cli ingest
    ... (also accelerate launch): block k of the passages goes to process k mod N; into a server every
    process writes its blocks, into the embedded store process 0 writes for all.
    """
    setup_logging(verbose)
    from hybrid_qdrant.evaluation.jobs import ingest_job, load_job
    from hybrid_qdrant.evaluation.launch import Launch

    cfg = load_job(config, overrides)
    launch = Launch.from_env()  # under torchrun / accelerate launch: this process's share
    with progress_bars(launch.main) as progress:
        done = ingest_job(cfg, progress, launch)
    if done is None:  # another process of the launch: process 0 reports
        return
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
    override it. --workers N and torchrun share the ingestion out as for hq ingest; process 0 evaluates.
    """
    setup_logging(verbose)
    from hybrid_qdrant.evaluation.jobs import evaluate_job, load_job, model_name
    from hybrid_qdrant.evaluation.launch import Launch
    from hybrid_qdrant.evaluation.report import markdown, report_dict

    cfg = load_job(config, overrides)
    launch = Launch.from_env()  # under torchrun / accelerate launch: the processes share the ingestion
    with progress_bars(launch.main) as progress:
        run = evaluate_job(cfg, progress, launch=launch)
    if run is None:  # another process of the launch: process 0 evaluates and reports
        return
    typer.echo(markdown(report_dict(run.result, model_name(cfg), run.details)))
    if run.report:
        typer.echo("wrote " + ", ".join(str(p) for p in run.report.values()))
    if run.runs is not None:
        typer.echo(f"wrote {len(run.runs.written) // 2} TREC runs and qrels under {run.runs.directory}")
    _echo_loader_skips(run.benchmark)
