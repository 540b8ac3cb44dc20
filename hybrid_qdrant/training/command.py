"""``hq train CONFIG.toml``: the typer command (registered in ``hybrid_qdrant.cli``).

A thin shell: it reads the config, applies the command-line overrides, calls
:func:`hybrid_qdrant.training.trainer.train` and prints the saved model's path. Errors propagate; the
CLI maps :class:`~hybrid_qdrant.errors.HQError` to exit codes. Heavy imports happen inside the function
so that ``hq --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train_command(
    config: Annotated[Path, typer.Argument(help="Training config (TOML), e.g. training/xlmr-hybrid.toml.")],
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Set output.dir.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Set model.name (hub id or path).")] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="Set train.alpha: 1 mono, 0 cross-lingual, 0.5 hybrid.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Set train.batch_size.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Set train.learning_rate.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Set train.max_steps.")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Set train.epochs.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Set train.seed.")] = None,
    resume: Annotated[
        bool | None,
        typer.Option("--resume/--no-resume", help="Continue from the latest checkpoint in the output dir."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Set any key: section.key=value (a TOML value); repeatable."),
    ] = None,
) -> None:
    """Fine-tune a multilingual encoder with hybrid (mono / cross-lingual) batches."""
    import logging
    import os

    from hybrid_qdrant.training.config import load_config, parse_override
    from hybrid_qdrant.training.trainer import train

    overrides = dict(parse_override(item) for item in set_ or [])
    flags = {
        "output.dir": str(output_dir) if output_dir is not None else None,
        "model.name": model,
        "train.alpha": alpha,
        "train.batch_size": batch_size,
        "train.learning_rate": learning_rate,
        "train.max_steps": max_steps,
        "train.epochs": epochs,
        "train.seed": seed,
        "train.resume": resume,
    }
    overrides.update({key: value for key, value in flags.items() if value is not None})
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun / accelerate, rank 0 speaks
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO if main_process else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    path = train(load_config(config, overrides))
    if main_process:
        typer.echo(str(path))
