"""``hq sweep`` end to end on CPU: tiny decoders built on the fly x alphas, LoRA training with hybrid
batches, evaluation on the XQuAD-R fixture, the table and plots; re-runs skip finished work."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch
from typer.testing import CliRunner

from hybrid_qdrant.errors import ConfigError, DataError
from hybrid_qdrant.sweep import STATE_FILE, collect, load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "training" / "sweeps" / "tiny.toml"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on one thread: a second one contends with any other load for microsecond matmuls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def recipe_copy(tmp: Path, **sweep_changes) -> Path:
    """The committed 3 x 3 demo sweep with its models, cells and results moved under ``tmp``."""
    data = tomllib.loads(RECIPE.read_text(encoding="utf-8"))
    data["sweep"].update(dir=str(tmp / "sweep"), results=str(tmp / "results"), **sweep_changes)
    for model in data["models"]:
        model["name"] = str(tmp / "models" / model["label"])
    path = tmp / "sweep.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def test_the_3x3_demo_sweep_trains_evaluates_collects_and_resumes(tmp_path, monkeypatch):
    from hybrid_qdrant.cli import app

    monkeypatch.chdir(ROOT)  # the demo's configs name the fixtures relative to the repository
    path = recipe_copy(tmp_path)
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output

    out = tmp_path / "results"
    table = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    labels = [(r["model"], r["alpha"]) for r in table["rows"]]
    assert labels == [(f"tiny-{h}", a) for h in (16, 32, 64) for a in (0.0, 0.5, 1.0)]
    sizes = [table["rows"][i]["params"] for i in (0, 3, 6)]
    assert 0 < sizes[0] < sizes[1] < sizes[2]  # counted from the built models
    for row in table["rows"]:
        for key in ("mono/map", "cross/map", "multi/map", "multi/rank_distance"):
            cell = row[key]
            assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"] and cell["queries"] >= 2
            assert cell["seed_sd"] is None  # one seed
    assert {c["alpha"] for c in table["significance"]} == {0.0, 1.0}  # against the reference alpha 0.5
    markdown = (out / "sweep.md").read_text(encoding="utf-8")
    assert "| tiny-64 | " in markdown and "multi rank distance" in markdown
    assert [r["mono_share"] for r in table["rows"] if r["alpha"] in (0.0, 1.0)] == [[0.0], [1.0]] * 3
    assert "| tiny-16 | 12.9 k | 1 | 42 | 100% | " in markdown  # its seeds, the realised mono share
    assert "Cells finished: 9 of 9." in markdown
    assert markdown in result.output
    csv_lines = (out / "sweep.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) == 10 and csv_lines[0].startswith("model,params,alpha,seeds,mono/map:mean")
    for png in ("metric_vs_params.png", "metric_vs_alpha.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    state = json.loads((tmp_path / "sweep" / STATE_FILE).read_text(encoding="utf-8"))
    assert len(state["cells"]) == 9 and all(c["status"] == "done" for c in state["cells"].values())
    cell = state["cells"]["tiny-16_a1_s42"]
    report = json.loads(Path(cell["report"]).read_text(encoding="utf-8"))
    assert report["sweep_cell"] == {"model": "tiny-16", "alpha": 1.0, "seed": 42}
    assert (Path(cell["final"]) / "adapter_config.json").is_file()
    # every cell's report, per-query values and training logs are kept with the table
    kept = out / "cells" / "tiny-16_a1_s42"
    assert Path(cell["report"]) == kept / "report.json"
    assert {p.name for p in kept.iterdir()} >= {
        "report.json",
        "report.queries.json.gz",
        "log_history.json",
        "train.log",
    }
    history = json.loads((kept / "log_history.json").read_text(encoding="utf-8"))
    assert history["steps"] == 12 and history["realised_share"]["mono_share"] == 1.0
    assert "realised batch share over the 12 steps trained" in (kept / "train.log").read_text(
        encoding="utf-8"
    )
    assert not list(out.rglob("qdrant"))  # the evaluation store stays under the run dir

    # an untuned model's report makes a row, a line in the alpha plot and a reference of every alpha;
    # here the base is the alpha-1 cell's own report, so its row equals that cell's and the differences
    # with alpha 1 are 0
    base = tmp_path / "base.json"
    shutil.copyfile(out / "cells" / "tiny-16_a1_s42" / "report.json", base)
    shutil.copyfile(
        out / "cells" / "tiny-16_a1_s42" / "report.queries.json.gz", tmp_path / "base.queries.json.gz"
    )
    with_base = tomllib.loads(path.read_text(encoding="utf-8"))
    with_base["models"][0]["base_report"] = str(base)
    path.write_text(tomli_w.dumps(with_base), encoding="utf-8")
    collect(load_sweep(path))
    table = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    untuned = [r for r in table["rows"] if r["alpha"] is None]
    alpha1 = next(r for r in table["rows"] if r["model"] == "tiny-16" and r["alpha"] == 1.0)
    assert [r["model"] for r in untuned] == ["tiny-16"]
    assert untuned[0]["mono/map"]["mean"] == pytest.approx(alpha1["mono/map"]["mean"])
    against_base = [c for c in table["significance"] if c["reference_alpha"] is None]
    assert {c["alpha"] for c in against_base} == {0.0, 0.5, 1.0}
    assert all(c["difference"] == 0 for c in against_base if c["alpha"] == 1.0)
    assert "| tiny-16 | " in (out / "sweep.md").read_text(encoding="utf-8")
    assert "| untuned |" in (out / "sweep.md").read_text(encoding="utf-8")
    # a base evaluated on other languages is refused, naming what differs
    report = json.loads(base.read_text(encoding="utf-8"))
    base.write_text(json.dumps({**report, "languages": ["en"]}), encoding="utf-8")
    with pytest.raises(DataError, match="base_report .* languages"):
        collect(load_sweep(path))
    base.write_text(json.dumps(report), encoding="utf-8")

    # a re-run trains nothing; a cell whose evaluation was lost is evaluated again, not retrained
    def no_training(config, callbacks=()):
        raise AssertionError(f"trained {config.output.dir} again")

    monkeypatch.setattr("hybrid_qdrant.training.trainer.train", no_training)
    lost = state["cells"]["tiny-32_a0_s42"]
    Path(lost["report"]).unlink()
    lost["status"] = "trained"
    (tmp_path / "sweep" / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    collect(load_sweep(path))  # a partial sweep says so, and which seeds each row rests on
    markdown = (out / "sweep.md").read_text(encoding="utf-8")
    assert "Cells finished: 8 of 9; each row gives the seeds it rests on" in markdown
    assert "| tiny-32 | " in markdown and not any(
        line.startswith("| tiny-32 | ") and "| 0 | " in line for line in markdown.splitlines()
    )
    run_sweep(load_sweep(path))
    state = json.loads((tmp_path / "sweep" / STATE_FILE).read_text(encoding="utf-8"))
    assert state["cells"]["tiny-32_a0_s42"]["status"] == "done" and Path(lost["report"]).is_file()

    # other evaluation settings: every cell is evaluated again with them, none retrained
    rescored = recipe_copy(tmp_path, evaluate={"evaluate.engine": "qdrant"})
    run_sweep(load_sweep(rescored))
    state = json.loads((tmp_path / "sweep" / STATE_FILE).read_text(encoding="utf-8"))
    assert all(c["status"] == "done" for c in state["cells"].values())
    for entry in state["cells"].values():
        assert json.loads(Path(entry["report"]).read_text(encoding="utf-8"))["options"]["engine"] == "qdrant"

    # a finished cell is never silently mixed with cells of other training settings
    changed = recipe_copy(tmp_path, train_overrides={"train.max_steps": 3})
    with pytest.raises(ConfigError, match="tiny-16_a0_s42 in .* was trained with other settings"):
        run_sweep(load_sweep(changed))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sweep": {"alpahs": [0.5]}}, "unknown key 'alpahs' in [sweep]"),
        ({"sweep": {"alphas": [1.5]}}, "must be values in [0, 1]"),
        ({"sweep": {"train_overrides": {"train.alpha": 0.3}}}, "train.alpha is set by the sweep"),
        ({"models": [{"label": "a"}, {"label": "a"}]}, "labels must differ"),
        ({"models": [{"label": "a b"}]}, "must be letters, digits"),
        (
            {"sweep": {"evaluate": {"encoder.modle": "x"}}},
            "unknown key 'modle' in [encoder]; did you mean 'model'",
        ),
        ({"sweep": {"evaluate": {"modle": "x"}}}, "override 'modle' must look like section.key"),
    ],
)
def test_bad_sweep_files_are_refused(tmp_path, change, message):
    (tmp_path / "e.toml").write_text("", encoding="utf-8")  # an evaluation job with every default
    data = {
        "sweep": {"train_config": "t.toml", "eval_config": str(tmp_path / "e.toml"), "alphas": [0.0, 1.0]},
        "models": [{"label": "m", "name": "org/m"}],
    }
    for section, values in change.items():
        if isinstance(values, dict):
            data[section].update(values)
        else:
            data[section] = values
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert message in str(info.value)
