"""Training end to end on the tiny fixture model, offline: hybrid batches, cached loss, hard negatives,
validation, save, reload, encode; and resuming after a crash gives the uninterrupted result."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import typer
from safetensors.numpy import load_file
from tiny_model import build_tiny_st_model
from transformers import TrainerCallback
from typer.testing import CliRunner

from hybrid_qdrant.cli.train import train as train_command
from hybrid_qdrant.training.config import config_from_dict
from hybrid_qdrant.training.trainer import LOG_HISTORY, train

FIXTURES = Path(__file__).parent / "fixtures" / "training"
PAIRS = FIXTURES / "pairs.jsonl"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    records = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines()]
    texts = [r[key] for r in records for key in ("query", "passage", "negative")]
    return build_tiny_st_model(tmp_path_factory.mktemp("models") / "tiny", texts)


def run_config(model: str, out: Path, **sections) -> dict:
    """A few steps of hybrid training on the fixture pairs (which all carry a hard negative)."""
    data = {
        "model": {"name": model},
        "data": {"sources": [{"kind": "jsonl", "path": str(PAIRS)}]},
        "train": {"alpha": 0.5, "batch_size": 4, "learning_rate": 1e-3, "max_steps": 4, "warmup_ratio": 0.0},
        "loss": {"cached": True, "mini_batch_size": 2},
        "output": {"dir": str(out), "save_steps": 2, "logging_steps": 1},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def weights(model_dir: Path) -> dict[str, np.ndarray]:
    return load_file(str(model_dir / "model.safetensors"))


def test_hybrid_training_through_the_command_saves_a_model_with_prompts(tmp_path, tiny_model):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "run"
    config = run_config(
        tiny_model,
        out,
        validation={"fraction": 0.25, "eval_steps": 2, "early_stopping_patience": 3, "ir_evaluation": True},
    )
    (tmp_path / "run.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    app = typer.Typer()
    app.command()(train_command)

    result = CliRunner().invoke(app, [str(tmp_path / "run.toml"), "--seed", "7"])

    assert result.exit_code == 0, result.output
    final = out / "final"
    assert result.output.strip().splitlines()[-1] == str(final)
    model = SentenceTransformer(str(final), device="cpu")
    assert model.prompts["query"] == "query: " and model.prompts["passage"] == "passage: "
    embeddings = model.encode_query(["where is the river", "wo ist Fluss"])
    assert embeddings.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    before, after = weights(Path(tiny_model)), weights(final)
    assert any(not np.allclose(before[k], after[k]) for k in before)  # it trained

    assert not list(out.glob("checkpoint-*"))  # a finished run keeps no checkpoint: resume needs none
    state = json.loads((out / LOG_HISTORY).read_text(encoding="utf-8"))
    assert state["steps"] == 4
    train_logs = [log for log in state["log_history"] if "loss" in log]
    assert len(train_logs) == 4
    assert all(
        0.0 <= log["mono_share"] <= 1.0 and log["mono_share"] + log["cross_share"] == 1.0
        for log in train_logs
    )
    # the share is over the steps trained so far (not the batches the data loader prefetched)
    assert all(
        abs(log["mono_share"] * log["step"] - round(log["mono_share"] * log["step"])) < 1e-9
        for log in train_logs
    )
    eval_logs = [log for log in state["log_history"] if "eval_loss" in log]
    assert [log["step"] for log in eval_logs] == [2, 4]
    assert "eval_multi_cosine_ndcg@10" in eval_logs[-1] and "eval_cross-de_cosine_ndcg@10" in eval_logs[-1]
    saved = (out / "train_config.toml").read_text(encoding="utf-8")
    assert "seed = 7" in saved and "alpha = 0.5" in saved


class Crash(TrainerCallback):
    """Fails the run right after the given step (a checkpoint exists from an earlier step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_resume_after_a_crash_continues_to_the_uninterrupted_result(tmp_path, tiny_model, caplog):
    whole = train(
        config_from_dict(run_config(tiny_model, tmp_path / "whole", output={"keep_checkpoints": True}))
    )
    assert sorted(p.name for p in (tmp_path / "whole").glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
    ]

    crashed = run_config(tiny_model, tmp_path / "crashed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config_from_dict(crashed), callbacks=[Crash(step=3)])
    assert (tmp_path / "crashed" / "checkpoint-2").is_dir()
    assert not (tmp_path / "crashed" / "final").exists()

    resumed = copy.deepcopy(crashed)
    resumed["train"]["resume"] = True
    with caplog.at_level(logging.INFO, logger="hybrid_qdrant.training.trainer"):
        final = train(config_from_dict(resumed))
    assert f"saved the model to {final} (" in caplog.text
    assert "removed checkpoint-2, checkpoint-4 (" in caplog.text and "keep_checkpoints = true" in caplog.text

    state = json.loads((tmp_path / "crashed" / LOG_HISTORY).read_text(encoding="utf-8"))
    assert state["steps"] == 4
    assert not list((tmp_path / "crashed").glob("checkpoint-*"))
    expected, got = weights(whole), weights(final)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_cross_only_symmetric_loss_on_mmarco_with_frozen_embeddings(tmp_path, tiny_model):
    config = run_config(
        tiny_model,
        tmp_path / "run",
        data={"sources": [{"kind": "mmarco", "path": str(FIXTURES / "mmarco"), "languages": ["en", "de"]}]},
        train={
            "alpha": 0.0,
            "batch_size": 2,
            "max_steps": 2,
            "gradient_checkpointing": True,
            "freeze_embeddings": True,
        },
        loss={"cached": False, "symmetric": True},
    )
    final = train(config_from_dict(config))
    before, after = weights(Path(tiny_model)), weights(final)
    embedding = next(k for k in before if k.endswith("word_embeddings.weight"))
    np.testing.assert_array_equal(before[embedding], after[embedding])
    assert any(not np.allclose(before[k], after[k]) for k in before if k != embedding)
    state = json.loads((tmp_path / "run" / LOG_HISTORY).read_text(encoding="utf-8"))
    assert [log["cross_share"] for log in state["log_history"] if "loss" in log] == [1.0, 1.0]
