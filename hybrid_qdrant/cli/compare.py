"""``hq compare``: cluster- and seed-aware paired tests between reports."""

from __future__ import annotations

from pathlib import Path

import typer

from hybrid_qdrant.cli.hq import app, command
from hybrid_qdrant.config import split_csv


@command(app, "compare")
def compare(
    reports_a: str = typer.Argument(
        ...,
        help="Report JSON of system A (its .queries.json.gz beside it), or several comma-separated, one "
        "per training seed: a1.json,a2.json,a3.json.",
    ),
    reports_b: str = typer.Argument(..., help="Report JSON(s) of system B, likewise."),
    metrics: str = typer.Option(
        "map", "--metrics", help="Comma-separated metrics, e.g. map,recall@1,rank_distance."
    ),
    settings: str = typer.Option("mono,cross,multi", "--settings", help="Comma-separated settings."),
    resamples: int = typer.Option(10000, "--resamples", help="Bootstrap and randomisation resamples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the resampling."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the comparison as JSON.", metavar="PATH"
    ),
) -> None:
    """Paired significance of A - B per setting, resampling clusters of parallel queries (and seeds).

    A query's cluster is its parallel group (the question in every language); with several runs per
    side the interval also covers the spread over seeds (a two-level bootstrap).
    """
    import json

    from hybrid_qdrant.atomic_write import atomic_write_bytes
    from hybrid_qdrant.evaluation.compare import compare_reports, markdown_table

    paths_a = [Path(p) for p in split_csv(reports_a)]
    paths_b = [Path(p) for p in split_csv(reports_b)]
    rows = compare_reports(
        paths_a,
        paths_b,
        tuple(split_csv(metrics)),
        tuple(split_csv(settings)),
        n_resamples=resamples,
        seed=seed,
    )
    typer.echo(markdown_table(rows, _side_name(paths_a), _side_name(paths_b)))
    if output:
        payload = {
            "a": [str(p) for p in paths_a],
            "b": [str(p) for p in paths_b],
            "resamples": resamples,
            "seed": seed,
            "method": "bootstrap over clusters of parallel queries (and runs); cluster sign-flip test",
            "rows": [r.as_dict() for r in rows],
        }
        atomic_write_bytes(output, (json.dumps(payload, indent=1) + "\n").encode())
        typer.echo(f"wrote {output}")


def _side_name(paths: list[Path]) -> str:
    """A short column name for one side of ``hq compare``."""
    return paths[0].stem if len(paths) == 1 else f"{paths[0].stem} (+{len(paths) - 1})"
