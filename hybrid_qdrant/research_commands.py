"""``hq fit`` and ``hq sweep``: the research commands (registered in ``hybrid_qdrant.cli``).

Thin shells: parse options, call one library function (``training.fit`` / ``sweep``), print its
result. Heavy imports happen inside the functions so that ``hq --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fit_command(
    config: Annotated[
        Path, typer.Argument(help="Training config (TOML), e.g. training/yi-34b-lora-hybrid.toml.")
    ],
    gpu_memory: Annotated[
        str, typer.Option("--gpu-memory", help="Memory of one GPU, e.g. 80GB (GiB).")
    ] = "80GB",
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs training together.")] = 1,
    strategy: Annotated[
        str,
        typer.Option("--strategy", help="ddp (replicated), zero2 (states sharded) or fsdp (all sharded)."),
    ] = "ddp",
    shape: Annotated[
        str | None,
        typer.Option(
            "--shape", help="Model shape: a known name (mistral-7b, yi-34b, ...) or a config.json path."
        ),
    ] = None,
    seq_len: Annotated[
        int | None, typer.Option("--seq-len", help="Tokens per text (default [model] max_seq_length).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Set a config key: section.key=value; repeatable.")
    ] = None,
    full_finetune: Annotated[
        bool,
        typer.Option("--full-finetune", help="Estimate without the config's [lora]: every weight trains."),
    ] = False,
) -> None:
    """Estimate a training config's memory per GPU; exit non-zero with one line when it cannot fit."""
    import dataclasses

    from hybrid_qdrant.training.config import load_config, parse_override
    from hybrid_qdrant.training.fit import check_fit, estimate, parse_memory, resolve_shape, setup_from_config

    overrides = dict(parse_override(item) for item in set_ or [])
    train_config = load_config(config, overrides)
    if full_finetune:
        train_config = dataclasses.replace(train_config, lora=None)
    setup = setup_from_config(
        train_config,
        gpu_memory=parse_memory(gpu_memory),
        gpus=gpus,
        strategy=strategy,
        shape=resolve_shape(shape) if shape else None,
        seq_len=seq_len,
    )
    result = estimate(setup)
    typer.echo(result.describe())
    check_fit(result)


def sweep_command(
    sweep: Annotated[Path, typer.Argument(help="Sweep file (TOML), e.g. training/sweeps/tiny.toml.")],
    collect_only: Annotated[
        bool, typer.Option("--collect-only", help="Only rebuild the table and plots from finished cells.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each cell's progress.")] = False,
) -> None:
    """Train and evaluate a grid of model size x alpha x seed (resumable); write the table and plots."""
    import logging
    import sys

    from hybrid_qdrant.sweep import collect, load_sweep, markdown_file, run_sweep

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    config = load_sweep(sweep)
    paths = collect(config) if collect_only else run_sweep(config)
    if paths:  # the main process of a distributed launch
        typer.echo(markdown_file(paths))
        typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
