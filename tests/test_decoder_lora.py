"""Decoder embedders with LoRA, offline on a tiny random Llama-style LM: EOS and left padding, hybrid-batch
LoRA training, save, reload as base + adapter (the path of ``hq evaluate --adapter``), evaluate, resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import toy_benchmark
from safetensors.numpy import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder
from hybrid_qdrant.errors import ConfigError, ModelError
from hybrid_qdrant.evaluation.evaluate import EvalOptions
from hybrid_qdrant.evaluation.jobs import run_evaluation
from hybrid_qdrant.store import open_store
from hybrid_qdrant.training.config import config_from_dict
from hybrid_qdrant.training.decoder import DEFAULT_INSTRUCTION, build_decoder_model
from hybrid_qdrant.training.tiny_decoder import build_tiny_decoder
from hybrid_qdrant.training.trainer import LOG_HISTORY, train

FIXTURES = Path(__file__).parent / "fixtures"
PAIRS = FIXTURES / "training" / "pairs.jsonl"
BEIR = FIXTURES / "beir" / "parallel"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on one thread: a second one contends with any other load for microsecond matmuls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory, one_thread) -> str:
    records = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines()]
    bench = toy_benchmark()
    texts = [r[k] for r in records for k in ("query", "passage", "negative")]
    texts += [p.text for p in bench.passages] + [q.text for q in bench.queries]
    return build_tiny_decoder(tmp_path_factory.mktemp("models") / "decoder", texts, hidden=32)


def lora_config(base: str, out: Path, **sections) -> dict:
    """A few steps of hybrid LoRA training of the decoder on the fixture pairs."""
    data = {
        "model": {
            "name": base,
            "kind": "decoder",
            "query_instruction": DEFAULT_INSTRUCTION,
            "passage_prefix": "",
        },
        "data": {"sources": [{"kind": "jsonl", "path": str(PAIRS)}]},
        "train": {
            "alpha": 0.5,
            "batch_size": 4,
            "learning_rate": 5e-3,
            "max_steps": 4,
            "warmup_ratio": 0.0,
            "gradient_checkpointing": True,
        },
        "loss": {"gather_across_devices": False},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "output": {"dir": str(out), "save_steps": 2, "logging_steps": 1},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def test_the_tokenizer_appends_eos_and_pads_left_so_padding_does_not_move_an_embedding(tiny_decoder):
    model = build_decoder_model(tiny_decoder, device="cpu")
    tok = model.tokenizer
    assert tok.padding_side == "left" and tok.pad_token == tok.eos_token
    batch = tok(["x", "a longer text"], padding=True)
    assert [ids[-1] for ids in batch["input_ids"]] == [tok.eos_token_id] * 2
    assert batch["input_ids"][0][0] == tok.pad_token_id and batch["attention_mask"][0][0] == 0
    assert batch["input_ids"][1][0] == tok.bos_token_id  # the BOS template is kept
    alone = model.encode(["x"], convert_to_numpy=True)
    padded = model.encode(["x", "a much longer text than x, to pad x a lot"], convert_to_numpy=True)
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)  # rotary positions: shift-invariant
    assert model.prompts["query"] == DEFAULT_INSTRUCTION


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_decoder) -> Path:
    """4 steps of hybrid LoRA training (checkpoints at 2 and 4); the final adapter directory."""
    return train(config_from_dict(lora_config(tiny_decoder, tmp_path_factory.mktemp("lora") / "run")))


def test_lora_with_hybrid_batches_saves_an_adapter_that_reloads_on_the_base_and_evaluates(
    tmp_path, tiny_decoder, trained
):
    from sentence_transformers import SentenceTransformer

    final = trained

    assert (final / "adapter_config.json").is_file() and (final / "adapter_model.safetensors").is_file()
    assert not (final / "model.safetensors").exists()  # the adapter only, never the base again
    adapter = load_file(str(final / "adapter_model.safetensors"))
    assert adapter and all("lora_" in key for key in adapter)
    assert any(np.abs(v).max() > 0 for k, v in adapter.items() if "lora_B" in k)  # it trained
    state = json.loads((final.parent / LOG_HISTORY).read_text(encoding="utf-8"))
    shares = [log["mono_share"] for log in state["log_history"] if "loss" in log]
    assert len(shares) == 4 and all(0.0 <= s <= 1.0 for s in shares)

    texts = ["Which cat sits?", "Der Hund rennt."]
    settings = EncoderSettings(
        model=tiny_decoder,
        adapter=str(final),
        query_prefix=DEFAULT_INSTRUCTION,
        passage_prefix="",
        device="cpu",
    )
    encoder = SentenceTransformerEncoder(settings)
    with_adapter = encoder.encode_queries(texts)
    standalone = SentenceTransformer(str(final), device="cpu").encode(texts, prompt_name="query")
    base = SentenceTransformer(tiny_decoder, device="cpu").encode(texts, prompt_name="query")
    np.testing.assert_allclose(with_adapter, standalone, atol=1e-5)
    assert np.abs(with_adapter - base).max() > 1e-3
    assert encoder.fingerprint != SentenceTransformerEncoder(settings, adapter=None).fingerprint

    bench = toy_benchmark()
    with open_store(location=str(tmp_path / "qdrant"), collection="toy") as store:
        run = run_evaluation(bench, encoder, store, "toy", EvalOptions())
    metrics = run.result.metrics()
    for setting in ("mono", "cross", "multi"):
        assert 0.0 < metrics[f"{setting}/map"] <= 1.0
    assert metrics["multi/rank_distance"] >= 0.0


def test_hq_evaluate_loads_base_plus_adapter(tmp_path, tiny_decoder, trained):
    from hybrid_qdrant.cli import app

    final = trained
    report = tmp_path / "report.json"
    args = ["evaluate", "--benchmark", "beir", "--data-dir", str(BEIR), "--model", tiny_decoder]
    args += ["--adapter", str(final), "--query-prefix", DEFAULT_INSTRUCTION, "--passage-prefix", ""]
    args += ["--location", str(tmp_path / "qdrant"), "--no-cache", "--output", str(report)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert json.loads(saved["model_fingerprint"])["adapter"].startswith("final@")
    assert "mono/map" in saved["metrics"]


def test_lora_on_an_encoder_saves_an_adapter_for_its_base(tmp_path):
    from sentence_transformers import SentenceTransformer
    from tiny_model import build_tiny_st_model

    records = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines()]
    base = build_tiny_st_model(tmp_path / "bert", [r[k] for r in records for k in ("query", "passage")])
    data = lora_config(base, tmp_path / "run", train={"max_steps": 2, "gradient_checkpointing": False})
    data["model"] = {"name": base}  # an encoder: its own pooling, "query: " / "passage: "
    data["lora"]["target_modules"] = ["query", "value"]
    final = train(config_from_dict(data))
    adapter = load_file(str(final / "adapter_model.safetensors"))
    assert adapter and all(".query." in k or ".value." in k for k in adapter)
    texts = ["where is the river"]
    attached = SentenceTransformerEncoder(EncoderSettings(model=base, adapter=str(final), device="cpu"))
    standalone = SentenceTransformer(str(final), device="cpu").encode(texts, prompt="query: ")
    np.testing.assert_allclose(attached.encode_queries(texts), standalone, atol=1e-5)


class Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise RuntimeError("simulated crash")


def test_a_resumed_lora_run_ends_with_the_uninterrupted_adapter(tmp_path, tiny_decoder, trained):
    whole = trained
    crashed = lora_config(tiny_decoder, tmp_path / "crashed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config_from_dict(crashed), callbacks=[Crash()])
    resumed = copy.deepcopy(crashed)
    resumed["train"]["resume"] = True
    final = train(config_from_dict(resumed))
    expected = load_file(str(whole / "adapter_model.safetensors"))
    got = load_file(str(final / "adapter_model.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"lora": {"qlora": True}}, ConfigError, "qlora = true needs a CUDA GPU"),
        ({"lora": {"target_modules": ["no_such_proj"]}}, ModelError, "[lora] target_modules"),
    ],
)
def test_lora_refusals_name_the_problem(tmp_path, tiny_decoder, changes, error, message):
    if torch.cuda.is_available() and "qlora" in changes["lora"]:
        pytest.skip("a GPU is visible")
    with pytest.raises(error) as info:
        train(config_from_dict(lora_config(tiny_decoder, tmp_path / "run", **changes)))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"kind": "encoder", "pooling": "lasttoken"}, "applies to kind = 'decoder'"),
        ({"kind": "llm"}, "[model] kind = 'llm' is not one of"),
        ({"dtype": "int8"}, "[model] dtype = 'int8' is not one of"),
    ],
)
def test_model_section_refusals(tiny_decoder, tmp_path, section, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict(lora_config(tiny_decoder, tmp_path, model=section))
    assert message in str(info.value)
