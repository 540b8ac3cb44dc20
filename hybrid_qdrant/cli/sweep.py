"""``hq sweep``: a resumable grid of training runs, each evaluated with one suite."""

from __future__ import annotations

from pathlib import Path

import typer

from hybrid_qdrant.cli.hq import app, command, setup_logging


@command(app, "sweep")
def sweep(
    sweep_file: Path = typer.Argument(..., help="Sweep file (TOML), e.g. training/sweeps/tiny.toml."),
    collect_only: bool = typer.Option(
        False, "--collect-only", help="Only rebuild the table and plots from the finished cells."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each cell's progress."),
) -> None:
    """Train and evaluate a grid of model size x alpha x seed (resumable); write the table and plots."""
    setup_logging(verbose)
    from hybrid_qdrant.sweep import collect, load_sweep, markdown_file, run_sweep

    config = load_sweep(sweep_file)
    paths = collect(config) if collect_only else run_sweep(config)
    if paths:  # the main process of a distributed launch
        typer.echo(markdown_file(paths))
        typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
