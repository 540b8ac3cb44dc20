"""``hq sweep``: a grid over model size x alpha x seed from one TOML, each cell trained and evaluated with
the same suite, resumable, collected into one table with confidence intervals, significance and plots.

- ``config``: the sweep file (``[sweep]``, ``[[models]]``) and its cells;
- ``state``: the resumable state file;
- ``runner``: training and evaluating the cells (``run_sweep``);
- ``table``: the table, comparisons and plots (``collect``).
"""

from __future__ import annotations

from hybrid_qdrant.sweep.config import Cell, SweepConfig, SweepModel, SweepSection, load_sweep
from hybrid_qdrant.sweep.runner import run_sweep
from hybrid_qdrant.sweep.state import STATE_FILE
from hybrid_qdrant.sweep.table import METRICS, collect, markdown_file

__all__ = [
    "METRICS",
    "STATE_FILE",
    "Cell",
    "SweepConfig",
    "SweepModel",
    "SweepSection",
    "collect",
    "load_sweep",
    "markdown_file",
    "run_sweep",
]
