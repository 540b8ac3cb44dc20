"""The sweep file: ``[sweep]`` (the grid and the shared configs) and ``[[models]]`` (the model sizes).

A sweep file::

    [sweep]
    train_config = "training/sweeps/tiny-train.toml"   # the base training config of every cell
    eval_config = "training/sweeps/tiny-eval.toml"     # an ``hq evaluate`` job config
    alphas = [0.0, 0.5, 1.0]
    seeds = [42]
    dir = "runs/sweep-tiny"                           # cells/<id>/train, sweep_state.json
    results = "eval/results/sweep-tiny"               # table (md, csv, json), plots, cells/<id>/ reports
    train_overrides = { "train.max_steps" = 8 }       # dotted training keys, applied to every cell
    evaluate = { "benchmark.languages" = ["en", "de"] }  # dotted evaluation keys, applied to every cell

    [[models]]
    label = "tiny-16"
    name = "runs/sweep-tiny/models/tiny-16"           # [model] name of the cells (hub id or path)
    params = 0                                        # for the plots; 0: counted from the directory
    tiny = { hidden = 16 }                            # build a tiny random decoder at `name` first
    overrides = { "train.batch_size" = 8 }            # dotted keys for this model's cells
    base_report = "eval/results/base.json"            # optional: the untuned model's hq evaluate report
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from hybrid_qdrant import config as typed
from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.evaluation.jobs import load_job


@dataclass(frozen=True)
class SweepModel:
    """One model size of the grid (``[[models]]``).

    Attributes:
        label: name in the table and plots (letters, digits, ``-_.``).
        name: the cells' ``[model] name`` (hub id or local path); empty: the training config's.
        params: parameter count for the plots; 0 counts it from the directory (or a known shape).
        overrides: dotted training overrides for this model's cells (``{"train.batch_size" = 8}``).
        tiny: build a tiny random decoder at ``name`` first (``build_tiny_decoder`` options: hidden,
            layers, heads, kv_heads, vocab_size, max_seq_length, seed), from the training texts.
        base_report: the untuned model's ``hq evaluate`` report (with its per-query file), evaluated on
            the cells' benchmark, languages and protocol: a "base" row in the table, a line in the
            alpha plot, and every alpha compared with it.
    """

    label: str
    name: str = ""
    params: float = 0.0
    overrides: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, int] = field(default_factory=dict)
    base_report: str = ""

    def __post_init__(self) -> None:
        if self.base_report and not Path(self.base_report).expanduser().is_file():
            raise ConfigError(f"[[models]] {self.label}: base_report {self.base_report} is not a file")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.label):
            raise ConfigError(f"[[models]] label {self.label!r} must be letters, digits, '-', '_' or '.'")
        if self.tiny and not self.name:
            raise ConfigError(f"[[models]] {self.label}: tiny needs a name (the directory to build in)")
        if self.params < 0:
            raise ConfigError(f"[[models]] {self.label}: params = {self.params} must be >= 0")
        _check_reserved(f"[[models]] {self.label} overrides", self.overrides)


@dataclass(frozen=True)
class SweepSection:
    """``[sweep]``: the grid's alphas and seeds, the shared configs, and where results go.

    Attributes:
        train_config: the base training config of every cell.
        eval_config: the evaluation job config of every cell (``hq evaluate``'s TOML).
        alphas / seeds: the grid.
        dir: cells, models and the state file.
        results: the table, plots and every cell's report and logs (default ``{dir}/results``).
        train_overrides: dotted training keys applied to every cell (``{"train.max_steps" = 8}``).
        evaluate: dotted evaluation job keys applied to every cell (``{"benchmark.languages" = ["en"]}``).
        resamples / confidence: of the intervals and tests.
        reference_alpha: each alpha is compared with this one.
    """

    train_config: str
    eval_config: str
    alphas: tuple[float, ...] = (0.0, 0.5, 1.0)
    seeds: tuple[int, ...] = (42,)
    dir: str = "runs/sweep"
    results: str = ""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    resamples: int = 2000
    confidence: float = 0.95
    reference_alpha: float = 0.5

    def __post_init__(self) -> None:
        if not self.alphas or not all(0.0 <= a <= 1.0 for a in self.alphas):
            raise ConfigError(f"[sweep] alphas = {list(self.alphas)} must be values in [0, 1]")
        if len(set(self.alphas)) != len(self.alphas) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("[sweep] alphas and seeds must not repeat")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ConfigError(f"[sweep] seeds = {list(self.seeds)} must be integers >= 0")
        if self.resamples < 100:
            raise ConfigError(f"[sweep] resamples = {self.resamples} must be >= 100")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"[sweep] confidence = {self.confidence} is outside (0, 1)")
        _check_reserved("[sweep] train_overrides", self.train_overrides)


#: Training keys the sweep sets for each cell.
RESERVED = frozenset({"model.name", "train.alpha", "train.seed", "output.dir", "train.resume"})


def _check_reserved(where: str, overrides: dict[str, Any]) -> None:
    taken = RESERVED & set(overrides)
    if taken:
        raise ConfigError(f"{where}: {sorted(taken)[0]} is set by the sweep for each cell")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep file: ``[sweep]`` and one ``[[models]]`` table per model size."""

    sweep: SweepSection
    models: tuple[SweepModel, ...]

    config_missing = {
        "sweep": "with train_config and eval_config",
        "models": "one [[models]] table per model",
    }

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("the sweep needs at least one [[models]] table")
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"[[models]] labels must differ: {labels}")

    @property
    def root(self) -> Path:
        return Path(self.sweep.dir).expanduser()

    @property
    def results_dir(self) -> Path:
        return Path(self.sweep.results).expanduser() if self.sweep.results else self.root / "results"

    def cells(self) -> list[Cell]:
        """Every (model, alpha, seed): models outermost, then seeds, then alphas, so a sweep stopped part
        way has every alpha of the seeds it finished."""
        return [Cell(m, a, s) for m, s, a in product(self.models, self.sweep.seeds, self.sweep.alphas)]


def load_sweep(path: str | Path) -> SweepConfig:
    """Read a sweep TOML (``[sweep]`` and ``[[models]]``), every key checked.

    Raises:
        ConfigError: unknown keys, bad values, missing tables.
    """
    config = typed.load(path, SweepConfig)
    load_job(config.sweep.eval_config, config.sweep.evaluate)  # the evaluation overrides are checked now
    return config


@dataclass(frozen=True)
class Cell:
    """One training run and its evaluation."""

    model: SweepModel
    alpha: float
    seed: int

    @property
    def id(self) -> str:
        return f"{self.model.label}_a{self.alpha:g}_s{self.seed}"


__all__ = ["Cell", "SweepConfig", "SweepModel", "SweepSection", "load_sweep"]
