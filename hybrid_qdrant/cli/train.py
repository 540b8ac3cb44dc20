"""``hq train`` (hybrid-batch fine-tuning) and ``hq memory`` (will a training config fit a GPU?)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hybrid_qdrant.cli.hq import app, command, setup_logging
from hybrid_qdrant.cli.options import TRAIN, with_flags
from hybrid_qdrant.ranks import main_process


@command(app, "train")
@with_flags(TRAIN, config_required=True)
def train(config: Path, overrides: dict[str, Any], verbose: bool) -> None:
    """Fine-tune a multilingual encoder with hybrid (monolingual / cross-lingual) batches.

    The config is a training TOML (tables [model], [[data.sources]], [train], [loss], [validation],
    [output], optionally [lora]: see training/README.md); --set section.key=value and the flags
    override it. Prints the saved model's folder.
    """
    setup_logging(True)  # training reports its progress at INFO (rank 0 only)
    from hybrid_qdrant.training.config import load_config
    from hybrid_qdrant.training.trainer import train as run_training

    path = run_training(load_config(config, overrides))
    if main_process():
        typer.echo(str(path))


def memory(
    gpu_memory: str = typer.Option("80GB", "--gpu-memory", help="Memory of one GPU, e.g. 80GB (GiB)."),
    gpus: int = typer.Option(1, "--gpus", help="GPUs training together."),
    strategy: str = typer.Option(
        "ddp", "--strategy", help="ddp (replicated), zero2 (states sharded) or fsdp (all sharded)."
    ),
    shape: str | None = typer.Option(
        None, "--shape", help="Model shape: a known name (mistral-7b, yi-34b, ...) or a config.json path."
    ),
    seq_len: int | None = typer.Option(
        None, "--seq-len", help="Tokens per text (default [model] max_seq_length)."
    ),
    full_finetune: bool = typer.Option(
        False, "--full-finetune", help="Estimate without the config's [lora] table: every weight trains."
    ),
    *,
    config: Path,
    overrides: dict[str, Any],
    verbose: bool,
) -> None:
    """Estimate a training config's memory per GPU; exit non-zero with one line when it cannot fit."""
    import dataclasses

    from hybrid_qdrant.training.config import load_config
    from hybrid_qdrant.training.memory import (
        check_fit,
        estimate,
        parse_memory,
        resolve_shape,
        setup_from_config,
    )

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


memory = with_flags(config_required=True)(memory)
command(app, "memory")(memory)
command(app, "fit", hidden=True, deprecated=True)(memory)  # the earlier name of `hq memory`
