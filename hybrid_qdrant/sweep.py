"""``hq sweep``: a grid over model size x alpha x seed from one TOML, each cell trained and evaluated with
the same suite, resumable, collected into one table with confidence intervals, significance and plots.

A sweep file::

    [sweep]
    train_config = "training/sweeps/tiny-train.toml"   # the base training config of every cell
    eval_config = "training/sweeps/tiny-eval.toml"     # an ``hq evaluate`` config: benchmark, languages...
    alphas = [0.0, 0.5, 1.0]
    seeds = [42]
    dir = "runs/sweep-tiny"                           # cells/<id>/{train,report.json}, sweep_state.json
    results = "eval/results/sweep-tiny"               # table (md, csv, json) and plots (png)
    train_overrides = { "train.max_steps" = 8 }       # dotted keys, applied to every cell
    evaluate = { languages = ["en", "de"] }           # hq evaluate keys, applied to every cell

    [[models]]
    label = "tiny-16"
    name = "runs/sweep-tiny/models/tiny-16"           # [model] name of the cells (hub id or path)
    params = 0                                        # for the plots; 0: counted from the directory
    tiny = { hidden = 16 }                            # build a tiny random decoder at `name` first
    overrides = { "train.batch_size" = 8 }            # dotted keys for this model's cells

Each cell trains with ``train()`` (``train.alpha``, ``train.seed``, ``output.dir`` set per cell) and
evaluates the saved model (LoRA: base + adapter) with ``run_evaluation`` in an embedded store of its own,
using the training config's query / passage prompts, then writes a report with per-query values. The
state file records each finished step with a fingerprint of the cell's configs: a re-run skips finished
cells, resumes an interrupted training from its last checkpoint, and refuses a cell whose config
changed (use another ``dir``).

Intervals: per setting, the table gives the macro average (as the reports), its mean over the seeds,
and a 95 % interval from a two-level bootstrap over clusters of parallel queries (a question in every
language) and over the seeds (``significance.bootstrap_mean``), plus the standard deviation of the
per-seed values when there are two seeds or more. Each alpha is compared with ``reference_alpha`` per
model by ``hq compare`` with all seeds of both sides.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import inspect
import io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_qdrant.atomic_write import atomic_savefig, atomic_write_bytes
from hybrid_qdrant.config import EvaluateConfig, check_keys, read_toml
from hybrid_qdrant.errors import ConfigError, DataError

__all__ = [
    "METRICS",
    "Cell",
    "SweepConfig",
    "SweepModel",
    "collect",
    "load_sweep",
    "markdown_file",
    "run_sweep",
]

logger = logging.getLogger(__name__)

STATE_FILE = "sweep_state.json"
STATE_VERSION = 1
#: (setting, metric) pairs in the table; mAP x 100, rank distance as is (lower is better).
METRICS = (("mono", "map"), ("cross", "map"), ("multi", "map"), ("multi", "rank_distance"))
LABELS = {
    "mono/map": "mono mAP",
    "cross/map": "cross mAP",
    "multi/map": "multi mAP",
    "multi/rank_distance": "multi rank distance",
}


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
    """

    label: str
    name: str = ""
    params: float = 0.0
    overrides: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.label):
            raise ConfigError(f"[[models]] label {self.label!r} must be letters, digits, '-', '_' or '.'")
        if self.tiny and not self.name:
            raise ConfigError(f"[[models]] {self.label}: tiny needs a name (the directory to build in)")
        if self.params < 0:
            raise ConfigError(f"[[models]] {self.label}: params = {self.params} must be >= 0")


@dataclass(frozen=True)
class SweepConfig:
    """The grid: models x alphas x seeds, the shared configs and where results go (``[sweep]``)."""

    train_config: str
    eval_config: str
    models: tuple[SweepModel, ...]
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
        if not self.models:
            raise ConfigError("the sweep needs at least one [[models]] table")
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"[[models]] labels must differ: {labels}")
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
        reserved = {"model.name", "train.alpha", "train.seed", "output.dir", "train.resume"}
        for where, overrides in [("train_overrides", self.train_overrides)] + [
            (f"[[models]] {m.label} overrides", m.overrides) for m in self.models
        ]:
            taken = reserved & set(overrides)
            if taken:
                raise ConfigError(f"{where}: {sorted(taken)[0]} is set by the sweep for each cell")
        check_keys(self.evaluate, EvaluateConfig, "[sweep] evaluate")

    @property
    def root(self) -> Path:
        return Path(self.dir).expanduser()

    @property
    def results_dir(self) -> Path:
        return Path(self.results).expanduser() if self.results else self.root / "results"

    def cells(self) -> list[Cell]:
        """Every (model, alpha, seed): models outermost, then seeds, then alphas, so a sweep stopped part
        way has every alpha of the seeds it finished."""
        return [Cell(m, a, s) for m, s, a in product(self.models, self.seeds, self.alphas)]


@dataclass(frozen=True)
class Cell:
    """One training run and its evaluation."""

    model: SweepModel
    alpha: float
    seed: int

    @property
    def id(self) -> str:
        return f"{self.model.label}_a{self.alpha:g}_s{self.seed}"


def load_sweep(path: str | Path) -> SweepConfig:
    """Read a sweep TOML (``[sweep]`` and ``[[models]]``).

    Raises:
        ConfigError: unknown keys, bad values, missing tables.
    """
    data = read_toml(path)
    check_keys(data, _TopLevel, str(path))
    if "sweep" not in data or not isinstance(data["sweep"], dict):
        raise ConfigError(f"{path}: missing the [sweep] table")
    table = dict(data["sweep"])
    check_keys(table, SweepConfig, f"[sweep] of {path}")
    models = []
    for raw in data.get("models", []):
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: models must be [[models]] tables")
        check_keys(raw, SweepModel, f"[[models]] of {path}")
        if "label" not in raw:
            raise ConfigError(f"{path}: a [[models]] table has no label")
        models.append(SweepModel(**{**raw, "params": float(raw.get("params", 0))}))
    for key in ("train_config", "eval_config"):
        if key not in table:
            raise ConfigError(f"{path}: [sweep] needs {key}")
    try:
        return SweepConfig(
            **{
                **table,
                "models": tuple(models),
                "alphas": tuple(float(a) for a in table.get("alphas", (0.0, 0.5, 1.0))),
                "seeds": tuple(int(s) for s in table.get("seeds", (42,))),
            }
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class _TopLevel:
    sweep: dict
    models: list


# ---------------------------------------------------------------------------------------------- state


def _load_state(root: Path) -> dict[str, Any]:
    path = root / STATE_FILE
    if not path.is_file():
        return {"version": STATE_VERSION, "cells": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the sweep state {path}: {exc}") from exc
    if state.get("version") != STATE_VERSION:
        raise DataError(f"{path} was written by another version of hq sweep; use another dir")
    return state


def _save_state(root: Path, state: dict[str, Any]) -> None:

    atomic_write_bytes(root / STATE_FILE, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())


# --------------------------------------------------------------------------------------------- cells


def _train_data(config: SweepConfig, cell: Cell, base: dict[str, Any]) -> dict[str, Any]:
    from hybrid_qdrant.training.config import apply_overrides

    per_cell = {
        **config.train_overrides,
        **cell.model.overrides,
        "train.alpha": cell.alpha,
        "train.seed": cell.seed,
        "output.dir": str(config.root / "cells" / cell.id / "train"),
    }
    if cell.model.name:
        per_cell["model.name"] = cell.model.name
    return apply_overrides(base, per_cell)


def _eval_config(config: SweepConfig) -> EvaluateConfig:
    from hybrid_qdrant.config import load_section

    return load_section(config.eval_config, EvaluateConfig, "evaluate", dict(config.evaluate))


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _build_tiny(model: SweepModel, base: dict[str, Any]) -> None:
    """Build the tiny decoder of a ``tiny`` model entry unless it exists, from the training texts."""
    from hybrid_qdrant.training.config import config_from_dict
    from hybrid_qdrant.training.sources import load_pairs
    from hybrid_qdrant.training.tiny_decoder import build_tiny_decoder

    path = Path(model.name).expanduser()
    if (path / "modules.json").is_file():
        return
    known = set(inspect.signature(build_tiny_decoder).parameters) - {"path", "texts"}
    unknown = sorted(set(model.tiny) - known)
    if unknown:
        raise ConfigError(
            f"[[models]] {model.label} tiny: unknown option {unknown[0]!r}; known: {sorted(known)}"
        )
    data = {**base, "model": {**base.get("model", {}), "name": "org/placeholder"}}
    pairs = load_pairs(config_from_dict(data).data.sources)
    texts = [t for p in pairs for t in (p.query, p.passage, p.negative) if t]
    logger.info("building tiny decoder %s at %s (%s)", model.label, path, model.tiny)
    build_tiny_decoder(path, texts, **model.tiny)


def _run_cell(
    config: SweepConfig, cell: Cell, base: dict[str, Any], entry: dict[str, Any], save: Callable[[], None]
) -> None:
    """Train (or resume) then evaluate one cell, recording each finished step in ``entry``."""
    from hybrid_qdrant.training.config import config_from_dict
    from hybrid_qdrant.training.trainer import FINAL_DIR, LOG_HISTORY, train

    cell_dir = config.results_dir / "cells" / cell.id  # what the table is built from: kept with it
    cell_dir.mkdir(parents=True, exist_ok=True)
    data = _train_data(config, cell, base)
    out = Path(data["output"]["dir"])
    if entry.get("status") not in ("trained", "done") or not (out / FINAL_DIR).is_dir():
        from transformers.trainer_utils import get_last_checkpoint

        if out.is_dir() and get_last_checkpoint(str(out)) is not None:
            data = {**data, "train": {**data["train"], "resume": True}}
            logger.info("cell %s: resuming its interrupted training", cell.id)
        start = time.perf_counter()
        with _log_to(cell_dir / "train.log"):
            final = train(config_from_dict(data))
        entry.update(status="trained", final=str(final), train_seconds=round(time.perf_counter() - start, 1))
        if _main_process():
            shutil.copyfile(out / LOG_HISTORY, cell_dir / LOG_HISTORY)
            save()
    if _main_process():  # under accelerate / torchrun the other processes wait for the evaluation
        start = time.perf_counter()
        report = _evaluate_cell(config, cell, config_from_dict(data), Path(entry["final"]), cell_dir)
        entry.update(status="done", report=str(report), eval_seconds=round(time.perf_counter() - start, 1))
        save()
    _wait_for_everyone()


@contextlib.contextmanager
def _log_to(path: Path):
    """Copy this package's log records (INFO and up) into ``path`` while the block runs (appending)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("hybrid_qdrant")
    level = package.level
    package.addHandler(handler)
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
        handler.close()


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _wait_for_everyone() -> None:
    """A barrier across the processes of a distributed launch (a no-op in one process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()


_BENCHMARKS: dict[str, Any] = {}


def _evaluate_cell(config: SweepConfig, cell: Cell, train_config, final: Path, cell_dir: Path) -> Path:
    """Evaluate a cell's saved model with the sweep's suite; return the report path."""
    from hybrid_qdrant.benchmarks import load_benchmark
    from hybrid_qdrant.encoder import EncoderSettings
    from hybrid_qdrant.pipeline import (
        StoreOptions,
        build_encoder,
        default_collection,
        open_collection,
        run_evaluation,
    )
    from hybrid_qdrant.report import write_report

    ev = _eval_config(config)
    key = json.dumps(
        [ev.benchmark, ev.data_dir, ev.languages, ev.context, ev.split, ev.answer_rule, ev.on_error]
    )
    if key not in _BENCHMARKS:
        _BENCHMARKS[key] = load_benchmark(
            ev.benchmark,
            ev.data_dir,
            languages=ev.languages,
            context=ev.context,
            split=ev.split,
            on_error=ev.on_error,
            answer_rule=ev.answer_rule,
        )
    bench = _BENCHMARKS[key]
    m = train_config.model
    settings = EncoderSettings(
        model=str(final),  # a LoRA run's final directory loads its base and the adapter
        query_prefix=m.query_prompt,
        passage_prefix=m.passage_prefix,
        batch_size=ev.batch_size,
        device=ev.device,
        max_seq_length=ev.max_seq_length,
    )
    encoder = build_encoder(settings, use_cache=False)  # every cell's model is new
    options = ev.eval_options()
    store_dir = config.root / "cells" / cell.id / "qdrant"  # a by-product under the run dir, not the results
    store = StoreOptions(location=str(store_dir), recreate=True)
    name = default_collection(bench.name, cell.id, encoder.fingerprint, ev.context)
    with open_collection(store, name) as opened:
        run = run_evaluation(bench, encoder, opened, name, options, on_error=ev.on_error)
    shutil.rmtree(store_dir, ignore_errors=True)  # a by-product: the report keeps what matters
    extra = {"sweep_cell": {"model": cell.model.label, "alpha": cell.alpha, "seed": cell.seed}}
    extra["timings"] = {k: round(v, 3) for k, v in run.timings.items()}
    path = cell_dir / "report.json"
    write_report(run.result, path, cell.model.label, extra)
    logger.info("cell %s: multi mAP %.4f", cell.id, run.result.metrics().get("multi/map", float("nan")))
    return path


def run_sweep(config: SweepConfig) -> dict[str, Path]:
    """Run every unfinished cell, then collect the table and plots; return the files written.

    Under ``accelerate launch`` / ``torchrun`` every process trains each cell together; the main process
    alone evaluates, records the state and writes the table (the others return ``{}``).

    Raises:
        ConfigError: a finished cell whose configs changed, bad configs. DataError / ModelError: as the
            training and evaluation raise them.
    """
    from hybrid_qdrant.training.config import config_from_dict

    base = read_toml(config.train_config)
    root = config.root
    root.mkdir(parents=True, exist_ok=True)
    state = _load_state(root)
    ev = asdict(_eval_config(config))
    cells = config.cells()
    for model in config.models:
        if model.tiny:
            if (
                int(os.environ.get("WORLD_SIZE", "1")) > 1
                and not (Path(model.name) / "modules.json").is_file()
            ):
                raise ConfigError(f"[[models]] {model.label}: build the tiny model in one process first")
            _build_tiny(model, base)
    for cell in cells:  # every cell's config is checked before the first one trains
        config_from_dict(_train_data(config, cell, base))
    for number, cell in enumerate(cells, 1):
        fingerprint = _fingerprint(_train_data(config, cell, base), ev, asdict(cell.model))
        entry = state["cells"].setdefault(cell.id, {"fingerprint": fingerprint})
        if entry.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"cell {cell.id} in {root} was run with other settings; use another [sweep] dir "
                "(or delete that cell's folder and its entry in sweep_state.json)"
            )
        entry.update(model=cell.model.label, alpha=cell.alpha, seed=cell.seed)
        if entry.get("status") == "done" and Path(entry.get("report", "")).is_file():
            logger.info("cell %d/%d %s: done, skipped", number, len(cells), cell.id)
            continue
        logger.info("cell %d/%d %s: running", number, len(cells), cell.id)
        _run_cell(config, cell, base, entry, lambda: _save_state(root, state))
    return collect(config, state) if _main_process() else {}


# ------------------------------------------------------------------------------------------- collect


def _interval(reports: list[Path], setting: str, metric: str, config: SweepConfig) -> dict[str, Any] | None:
    """A cell group's macro mean over its seeds with the interval over seeds and question clusters."""
    from hybrid_qdrant.compare import _groups, _load, setting_values
    from hybrid_qdrant.significance import bootstrap_mean

    files = {r: _load(r) for r in reports}
    per_seed = [setting_values(files[r].slices, setting, metric) for r in reports]
    if not all(values for values, _ in per_seed):
        return None
    boot = bootstrap_mean(
        [values for values, _ in per_seed],
        n_resamples=config.resamples,
        confidence=config.confidence,
        groups=_groups(files),
        weights=per_seed[0][1],
    )
    seed_values = [sum(w[q] * v[q] for q in v) for v, w in per_seed]  # each seed's macro value
    return {
        "mean": boot.mean_difference,
        "ci_low": boot.ci_low,
        "ci_high": boot.ci_high,
        "queries": boot.n_queries,
        "clusters": boot.n_clusters,
        "per_seed": seed_values,
        "seed_sd": float(np.std(seed_values, ddof=1)) if len(seed_values) > 1 else None,
    }


def _parameters(model: SweepModel, base: dict[str, Any]) -> float:
    from hybrid_qdrant.training.fit import parameter_count, resolve_shape

    if model.params:
        return model.params
    name = model.name or base.get("model", {}).get("name", "")
    path = Path(name).expanduser()
    try:
        return float(parameter_count(path) if path.is_dir() else resolve_shape(name).params)
    except ConfigError as exc:
        raise ConfigError(f"[[models]] {model.label}: set params = N ({exc})") from exc


def collect(config: SweepConfig, state: dict[str, Any] | None = None) -> dict[str, Path]:
    """The table (Markdown, CSV, JSON) and the plots (PNG) from the finished cells' reports.

    Raises:
        DataError: no cell has finished.
    """

    state = state or _load_state(config.root)
    base = read_toml(config.train_config)
    done = {k: v for k, v in state["cells"].items() if v.get("status") == "done"}
    if not done:
        raise DataError(f"no finished cell in {config.root}: run the sweep first")
    rows: list[dict[str, Any]] = []
    by_alpha: dict[tuple[str, float], list[Path]] = {}
    for model in config.models:
        params = _parameters(model, base)
        for alpha in config.alphas:
            cells = [c for c in config.cells() if c.model == model and c.alpha == alpha and c.id in done]
            entries = [done[c.id] for c in cells]
            if not entries:
                continue
            reports = [Path(e["report"]) for e in entries]
            row: dict[str, Any] = {
                "model": model.label,
                "params": params,
                "alpha": alpha,
                "seeds": len(reports),
            }
            for setting, metric in METRICS:
                value = _interval(reports, setting, metric, config)
                if value is not None:
                    row[f"{setting}/{metric}"] = value
            by_alpha[(model.label, alpha)] = reports
            rows.append(row)
    comparisons = _significance(config, by_alpha)
    out = config.results_dir
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out / "sweep.md",
        "csv": out / "sweep.csv",
        "json": out / "sweep.json",
        "params_plot": out / "metric_vs_params.png",
        "alpha_plot": out / "metric_vs_alpha.png",
    }
    payload = {
        "confidence": config.confidence,
        "resamples": config.resamples,
        "interval": "percentile bootstrap over clusters of parallel queries and over the seeds (two-level)",
        "reference_alpha": config.reference_alpha,
        "rows": rows,
        "significance": comparisons,
    }
    atomic_write_bytes(paths["json"], (json.dumps(payload, indent=1) + "\n").encode())
    atomic_write_bytes(paths["csv"], _csv(rows).encode())
    atomic_write_bytes(paths["markdown"], markdown(config, rows, comparisons).encode())
    _plot(rows, "params", paths["params_plot"], config.confidence)
    _plot(rows, "alpha", paths["alpha_plot"], config.confidence)
    return paths


def _significance(
    config: SweepConfig, by_alpha: Mapping[tuple[str, float], list[Path]]
) -> list[dict[str, Any]]:
    """Per model, each alpha against ``reference_alpha`` with ``hq compare`` (all seeds of each side)."""
    from hybrid_qdrant.compare import compare_reports

    out = []
    ref = config.reference_alpha
    for model in config.models:
        reference = by_alpha.get((model.label, ref))
        if not reference:
            continue
        for alpha in config.alphas:
            reports = by_alpha.get((model.label, alpha))
            if alpha == ref or not reports:
                continue
            for setting, metric in METRICS:
                try:
                    (row,) = compare_reports(
                        reports,
                        reference,
                        (metric,),
                        (setting,),
                        n_resamples=config.resamples,
                        confidence=config.confidence,
                    )
                except DataError as exc:
                    logger.warning(
                        "%s alpha %g vs %g, %s/%s: %s", model.label, alpha, ref, setting, metric, exc
                    )
                    continue
                out.append(
                    {
                        "model": model.label,
                        "alpha": alpha,
                        "reference_alpha": ref,
                        "metric": f"{setting}/{metric}",
                        **{k: v for k, v in row.as_dict().items() if k not in ("setting", "metric")},
                    }
                )
    return out


def _scale(key: str) -> float:
    return 1.0 if key.endswith("rank_distance") else 100.0


def _cell(value: dict[str, Any] | None, key: str) -> str:
    if not value:
        return "-"
    s = _scale(key)
    text = f"{value['mean'] * s:.1f} [{value['ci_low'] * s:.1f}, {value['ci_high'] * s:.1f}]"
    if value.get("seed_sd") is not None:
        text += f" ±{value['seed_sd'] * s:.1f}"
    return text


def markdown(config: SweepConfig, rows: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> str:
    """The sweep table and the significance table as Markdown."""
    keys = [f"{s}/{m}" for s, m in METRICS]
    pct = f"{config.confidence:.0%}"
    lines = [
        f"# Sweep: model size x alpha ({len(config.seeds)} seed(s): {', '.join(map(str, config.seeds))})",
        "",
        f"Macro average (as the reports) with its {pct} bootstrap interval over clusters of parallel "
        "queries and over the seeds (mAP x 100; rank distance: lower is better)"
        + ("; ±: standard deviation of the per-seed values." if len(config.seeds) > 1 else "."),
        "",
        "| model | parameters | alpha | " + " | ".join(LABELS[k] for k in keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for row in rows:
        cells = [_cell(row.get(k), k) for k in keys]
        lines.append(
            f"| {row['model']} | {_params(row['params'])} | {row['alpha']:g} | " + " | ".join(cells) + " |"
        )
    if comparisons:
        lines += [
            "",
            f"Each alpha against alpha = {config.reference_alpha:g} (`hq compare` with every seed of each "
            "side: bootstrap over question clusters and seeds):",
            "",
            "| model | alpha | metric | difference | "
            + pct
            + " CI | p (bootstrap) | p (randomisation) | run-pair differences | queries | clusters |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in comparisons:
            s = _scale(c["metric"])
            p_rand = "-" if c["p_randomization"] is None else f"{c['p_randomization']:.4f}"
            spread = (
                "-"
                if c["spread_low"] is None
                else f"{c['spread_low'] * s:+.2f} to {c['spread_high'] * s:+.2f}"
            )
            lines.append(
                f"| {c['model']} | {c['alpha']:g} | {LABELS[c['metric']]} | {c['difference'] * s:+.2f} | "
                f"[{c['ci_low'] * s:+.2f}, {c['ci_high'] * s:+.2f}] | {c['p_bootstrap']:.4f} | "
                f"{p_rand} | {spread} | {c['n_queries']} | {c['n_clusters']} |"
            )
        from hybrid_qdrant.compare import caution

        if warning := caution(comparisons):
            lines += ["", warning]
    return "\n".join(lines) + "\n"


def markdown_file(paths: Mapping[str, Path]) -> str:
    """The Markdown table a sweep wrote."""
    return Path(paths["markdown"]).read_text(encoding="utf-8")


def _params(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f}"


def _csv(rows: list[dict[str, Any]]) -> str:
    keys = [f"{s}/{m}" for s, m in METRICS]
    fields = ("mean", "ci_low", "ci_high", "seed_sd", "queries", "clusters")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "params", "alpha", "seeds"] + [f"{k}:{f}" for k in keys for f in fields])
    for row in rows:
        values = [row["model"], int(row["params"]), row["alpha"], row["seeds"]]
        for k in keys:
            values += ["" if row.get(k) is None or row[k].get(f) is None else row[k][f] for f in fields]
        writer.writerow(values)
    return buffer.getvalue()


def _plot(rows: list[dict[str, Any]], x: str, path: Path, confidence: float) -> None:
    """One panel per metric; x = parameters (log) with a line per alpha, or x = alpha with one per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    keys = [f"{s}/{m}" for s, m in METRICS]
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["alpha"] if x == "params" else row["model"], []).append(row)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6))
    for ax, key in zip(axes, keys, strict=True):
        s = _scale(key)
        width = len(groups) - 1 or 1
        for number, (group, members) in enumerate(groups.items()):
            members = sorted((r for r in members if r.get(key)), key=lambda r: r[x])
            if not members:
                continue
            dodge = (number - width / 2) / width  # in [-0.5, 0.5]: keep the error bars apart
            xs = np.array([r[x] for r in members], dtype=float)
            xs = xs * (1 + 0.08 * dodge) if x == "params" else xs + 0.03 * dodge
            ys = np.array([r[key]["mean"] * s for r in members])  # (points,)
            lows = np.array([r[key]["ci_low"] * s for r in members])
            highs = np.array([r[key]["ci_high"] * s for r in members])
            label = f"alpha {group:g}" if x == "params" else str(group)
            ax.errorbar(xs, ys, yerr=np.stack([ys - lows, highs - ys]), marker="o", capsize=3, label=label)
        if x == "params":
            ticks = sorted({r["params"] for r in rows})
            ax.set_xscale("log")
            ax.set_xticks(ticks, [_params(t) for t in ticks])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("parameters" if x == "params" else "alpha (share of monolingual batches)")
        ax.set_title(LABELS[key] + (" (lower is better)" if key.endswith("rank_distance") else " x 100"))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"error bars: {confidence:.0%} bootstrap intervals over question clusters and seeds", fontsize=9
    )
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=110)
    finally:
        plt.close(fig)
