"""training/replication/gpu.sh end to end on CPU with a tiny model: configs written, sweep run, table kept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tiny_model import build_tiny_st_model

from hybrid_qdrant.benchmarks import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
LAREQA = ROOT / "tests" / "fixtures" / "lareqa"


def test_the_gpu_grid_script_runs_unchanged_on_cpu(tmp_path):
    bench = load_benchmark("xquad-r", LAREQA / "xquad-r", ["en", "de", "es"])
    texts = [p.text for p in bench.passages] + [q.text for q in bench.queries]
    model = build_tiny_st_model(tmp_path / "tiny", texts)
    data = tmp_path / "lareqa"
    shutil.copytree(LAREQA, data)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # this venv's hq
        "MODEL": model,
        "LABEL": "tiny",
        "DATA": str(data),
        "TRAIN_SET": "xquad-r",  # the fixtures' MLQA-R is too small for a batch; a smoke test only
        "ALPHAS": "1.0, 0.0",
        "SEEDS": "1",
        "BATCH": "2",
        "STEPS": "2",
        "PRECISION": "fp32",
        "DEVICE": "cpu",
        "EVAL_BATCH": "16",
        "TRAIN_LANGUAGES": '"en", "de", "es"',
        "EVAL_LANGUAGES": '"en", "de", "es"',
        "OUT": str(tmp_path / "run"),
        "RESULTS": str(tmp_path / "results"),
        "OMP_NUM_THREADS": "1",
    }
    script = ROOT / "training" / "replication" / "gpu.sh"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads((tmp_path / "results" / "sweep.json").read_text(encoding="utf-8"))
    assert [(row["model"], row["alpha"]) for row in table["rows"]] == [("tiny", 1.0), ("tiny", 0.0)]
    for cell in ("tiny_a1_s1", "tiny_a0_s1"):
        kept = tmp_path / "results" / "cells" / cell
        assert (kept / "report.json").is_file() and (kept / "log_history.json").is_file()
    assert "batch_size = 2" in (tmp_path / "run" / "train.toml").read_text(encoding="utf-8")

    missing = subprocess.run(
        ["bash", str(script)], env={**env, "DATA": str(tmp_path / "nowhere")}, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "data folder not found" in missing.stderr
