"""Running a sweep: each cell trained (or resumed) with ``train()`` and evaluated with ``evaluate_job``.

Each cell trains with the base training config (``train.alpha``, ``train.seed``, ``output.dir`` set per
cell) and evaluates the saved model (LoRA: base + adapter) with the sweep's evaluation job in an
embedded store of its own, using the training config's query / passage prompts, then keeps its report
(with per-query values), log history and log under the results folder. The state file records each
finished step with fingerprints of the cell's training and evaluation configs: a re-run skips finished
cells, evaluates again (without retraining) a cell whose evaluation settings changed, resumes an
interrupted training from its last checkpoint, and refuses a cell whose training config changed (use
another ``dir``). Under ``accelerate launch`` / ``torchrun`` every process trains each cell together; the main
process alone evaluates, records the state and writes the table.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from hybrid_qdrant import config as typed
from hybrid_qdrant.config import read_toml
from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.evaluation.jobs import JobConfig, evaluate_job, load_job
from hybrid_qdrant.ranks import main_process, wait_for_everyone, world_size
from hybrid_qdrant.sweep.config import Cell, SweepConfig, SweepModel
from hybrid_qdrant.sweep.state import fingerprint, load_state, save_state
from hybrid_qdrant.sweep.table import collect

logger = logging.getLogger(__name__)


def _train_data(config: SweepConfig, cell: Cell, base: dict[str, Any]) -> dict[str, Any]:
    from hybrid_qdrant.training.config import apply_overrides

    per_cell = {
        **config.sweep.train_overrides,
        **cell.model.overrides,
        "train.alpha": cell.alpha,
        "train.seed": cell.seed,
        "output.dir": str(config.root / "cells" / cell.id / "train"),
    }
    if cell.model.name:
        per_cell["model.name"] = cell.model.name
    return apply_overrides(base, per_cell)


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
        if main_process():
            shutil.copyfile(out / LOG_HISTORY, cell_dir / LOG_HISTORY)
            save()
    if main_process():  # under accelerate / torchrun the other processes wait for the evaluation
        start = time.perf_counter()
        report = _evaluate_cell(config, cell, config_from_dict(data), Path(entry["final"]), cell_dir)
        entry.update(status="done", report=str(report), eval_seconds=round(time.perf_counter() - start, 1))
        save()
    wait_for_everyone()


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


def _cell_job(config: SweepConfig, cell: Cell, train_config, final: Path, cell_dir: Path) -> JobConfig:
    """The evaluation job of a cell: the sweep's suite, on the cell's model, in a store of its own."""
    job = load_job(config.sweep.eval_config, config.sweep.evaluate)
    model = train_config.model
    return replace(
        job,
        # a LoRA run's final directory loads its base and the adapter
        encoder=replace(
            job.encoder,
            model=str(final),
            query_prefix=model.query_prompt,
            passage_prefix=model.passage_prefix,
        ),
        cache=replace(job.cache, enabled=False),  # every cell's model is new
        store=replace(job.store, location=str(config.root / "cells" / cell.id / "qdrant"), url=None),
        collection=replace(job.collection, name=None, alias=None, recreate=True),
        report=replace(
            job.report,
            output=str(cell_dir / "report.json"),
            model_name=cell.model.label,
            run_dir=str(cell_dir / "runs") if job.report.run_dir else None,  # each cell its own
        ),
    )


def _evaluate_cell(config: SweepConfig, cell: Cell, train_config, final: Path, cell_dir: Path) -> Path:
    """Evaluate a cell's saved model with the sweep's suite; return the report path."""
    job = _cell_job(config, cell, train_config, final, cell_dir)
    extra = {"sweep_cell": {"model": cell.model.label, "alpha": cell.alpha, "seed": cell.seed}}
    run = evaluate_job(job, extra=extra)
    shutil.rmtree(job.store.location, ignore_errors=True)  # a by-product: the report keeps what matters
    logger.info("cell %s: multi mAP %.4f", cell.id, run.result.metrics().get("multi/map", float("nan")))
    return run.report["json"]


def run_sweep(config: SweepConfig) -> dict[str, Path]:
    """Run every unfinished cell, then collect the table and plots; return the files written.

    Under ``accelerate launch`` / ``torchrun`` every process trains each cell together; the main process
    alone evaluates, records the state and writes the table (the others return ``{}``).

    Raises:
        ConfigError: a finished cell whose configs changed, bad configs. DataError / ModelError: as the
            training and evaluation raise them.
    """
    from hybrid_qdrant.training.config import config_from_dict

    base = read_toml(config.sweep.train_config)
    root = config.root
    root.mkdir(parents=True, exist_ok=True)
    state = load_state(root)
    ev = typed.to_plain(load_job(config.sweep.eval_config, config.sweep.evaluate))
    cells = config.cells()
    for model in config.models:
        if model.tiny:
            if world_size() > 1 and not (Path(model.name) / "modules.json").is_file():
                raise ConfigError(f"[[models]] {model.label}: build the tiny model in one process first")
            _build_tiny(model, base)
    for cell in cells:  # every cell's config is checked before the first one trains
        config_from_dict(_train_data(config, cell, base))
    for number, cell in enumerate(cells, 1):
        model = {k: v for k, v in asdict(cell.model).items() if k != "base_report"}  # not a training key
        trained_with = fingerprint(_train_data(config, cell, base), model)
        evaluated_with = fingerprint(ev)
        entry = state["cells"].setdefault(cell.id, {"train_fingerprint": trained_with})
        if entry.get("train_fingerprint") != trained_with:
            raise ConfigError(
                f"cell {cell.id} in {root} was trained with other settings; use another [sweep] dir "
                "(or delete that cell's folder and its entry in sweep_state.json)"
            )
        entry.update(model=cell.model.label, alpha=cell.alpha, seed=cell.seed)
        if entry.get("status") == "done" and entry.get("eval_fingerprint") != evaluated_with:
            logger.info("cell %s: the evaluation settings changed; evaluating its model again", cell.id)
            entry["status"] = "trained"
        entry["eval_fingerprint"] = evaluated_with
        if entry.get("status") == "done" and Path(entry.get("report", "")).is_file():
            logger.info("cell %d/%d %s: done, skipped", number, len(cells), cell.id)
            continue
        logger.info("cell %d/%d %s: running", number, len(cells), cell.id)
        _run_cell(config, cell, base, entry, lambda: save_state(root, state))
    return collect(config, state) if main_process() else {}


__all__ = ["run_sweep"]
