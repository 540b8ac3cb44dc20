"""The training config: recipes, every bad config rejected with its message, before training starts."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hybrid_qdrant.cli.train import train as train_command
from hybrid_qdrant.errors import ConfigError, DataError, ModelError
from hybrid_qdrant.training.config import TrainConfig, config_from_dict, load_config, parse_override
from hybrid_qdrant.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "training"
RECIPES = sorted((ROOT / "training").glob("*.toml"))
BASE = {
    "model": {"name": "org/model"},
    "data": {"sources": [{"kind": "jsonl", "path": str(FIXTURES / "pairs.jsonl")}]},
}


def build(changes: dict) -> TrainConfig:
    """BASE with ``{"section.key": value}`` set (a value of ... deletes the key or section)."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        section, _, key = dotted.partition(".")
        if value is ...:
            (data[section].pop(key) if key else data.pop(section))
        else:
            data.setdefault(section, {})[key] = value
    return config_from_dict(data)


def test_recipes_load():
    assert {p.stem for p in RECIPES} >= {
        f"{m}-{k}" for m in ("xlmr", "labse") for k in ("mono", "cross", "hybrid")
    } | {"cpu-small"}
    for recipe in RECIPES:
        load_config(recipe, {"model.name": "org/model"})  # cpu-small names a local model you build first


@pytest.mark.parametrize("model", ["xlmr", "labse"])
@pytest.mark.parametrize(("kind", "alpha"), [("mono", 1.0), ("cross", 0.0), ("hybrid", 0.5)])
def test_paper_recipes_use_the_paper_settings(model, kind, alpha):
    config = load_config(ROOT / "training" / f"{model}-{kind}.toml")
    assert (
        config.model.name
        == {"xlmr": "FacebookAI/xlm-roberta-large", "labse": "sentence-transformers/LaBSE"}[model]
    )
    t = config.train
    assert (t.alpha, t.learning_rate, t.batch_size, t.weight_decay) == (alpha, 3e-5, 100, 0.01)
    assert (config.model.query_prefix, config.model.passage_prefix) == ("query: ", "passage: ")


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"train.alpah": 0.5}, ConfigError, "unknown key 'alpah' in [train]; did you mean 'alpha'?"),
        ({"trian.alpha": 0.5}, ConfigError, "unknown section [trian]; did you mean 'train'?"),
        ({"train.alpha": 1.5}, ConfigError, "[train] alpha = 1.5 is outside [0, 1]"),
        ({"train.alpha": -0.1}, ConfigError, "[train] alpha = -0.1 is outside [0, 1]"),
        ({"train.batch_size": "big"}, ConfigError, "[train] batch_size must be an integer, got a string"),
        ({"train.learning_rate": 0}, ConfigError, "[train] learning_rate = 0.0 must be > 0"),
        ({"train.precision": "fp8"}, ConfigError, "[train] precision = 'fp8' is not one of"),
        ({"train.resume": "yes"}, ConfigError, "[train] resume must be true or false, got a string"),
        ({"train.max_steps": 0, "train.epochs": 0}, ConfigError, "[train] needs epochs > 0 or max_steps > 0"),
        ({"loss.temperature": 0}, ConfigError, "[loss] temperature = 0.0 must be > 0"),
        ({"loss.cached": True, "loss.mini_batch_size": 200}, ConfigError, "mini_batch_size = 200 exceeds"),
        ({"validation.fraction": 1.0}, ConfigError, "[validation] fraction = 1.0 is outside [0, 1)"),
        (
            {"validation.early_stopping_patience": 2},
            ConfigError,
            "early_stopping_patience needs validation data",
        ),
        ({"model": ...}, ConfigError, "missing section [model]"),
        ({"model.name": ...}, ConfigError, "missing key 'name' in [model]"),
        ({"data.sources": []}, ConfigError, "[data] needs at least one [[data.sources]] table"),
        ({"data.sources": [{"kind": "csv", "path": "x"}]}, ConfigError, "kind = 'csv' is not one of"),
        (
            {"data.sources": [{"kind": "jsonl", "path": "x", "context": True}]},
            ConfigError,
            "key 'context' does not apply to a 'jsonl' source in [[data.sources]]",
        ),
        ({"data.sources": [{"kind": "jsonl", "pth": "x"}]}, ConfigError, "did you mean 'path'?"),
        ({"data.sources": [{"kind": "lareqa"}]}, ConfigError, "[[data.sources]] name = '' is not one of"),
        ({"data.sources": [{"kind": "mmarco", "path": "x"}]}, ConfigError, "needs languages"),
        ({"data.negatives": "maybe"}, ConfigError, "[data] negatives = 'maybe' is not one of"),
        ({"model.name": "./no/such/model"}, ModelError, "model path does not exist: ./no/such/model"),
    ],
)
def test_bad_config_is_rejected_with_its_message(changes, error, message):
    with pytest.raises(error) as caught:
        build(changes)
    assert message in str(caught.value)


def test_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[train\nalpha = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(tmp_path / "bad.toml")


def test_overrides_parse_toml_values_and_are_checked():
    assert parse_override("train.alpha=0.25") == ("train.alpha", 0.25)
    assert parse_override("output.dir=runs/x") == ("output.dir", "runs/x")
    assert parse_override('data.languages=["de", "en"]') == ("data.languages", ["de", "en"])
    config = load_config(RECIPES[0], {"model.name": "org/model", "train.alpha": 0.0, "output.dir": "o"})
    assert (config.train.alpha, config.output.dir) == (0.0, "o")
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        load_config(RECIPES[0], {"model.name": "org/model", "train.alhpa": 0.0})
    with pytest.raises(ConfigError, match="must look like section.key"):
        parse_override("alpha")


def test_a_comma_separated_string_is_a_list_of_strings(tmp_path):
    config = build({"data.languages": "de, en", "lora.target_modules": "q_proj,v_proj"})
    assert config.data.languages == ("de", "en")
    assert config.lora.target_modules == ("q_proj", "v_proj")
    assert build({"output.report_to": "none"}).output.report_to == ("none",)
    assert build(dict([parse_override("data.languages=de,en")])).data.languages == ("de", "en")
    for text in ("de,,en", "de,", ""):
        with pytest.raises(ConfigError, match=r"\[data\] languages = .* has an empty item"):
            build({"data.languages": text})


def test_a_string_where_numbers_are_expected_is_refused():
    from dataclasses import dataclass

    from hybrid_qdrant.config import build as _build

    @dataclass(frozen=True)
    class Grid:
        alphas: tuple[float, ...] = ()
        seeds: list[int] | None = None

    assert _build(Grid, {"alphas": [0, 0.5], "seeds": [1, 2]}, "[sweep]", "sweep") == Grid((0.0, 0.5), [1, 2])
    with pytest.raises(ConfigError, match=r"^\[sweep\] alphas must be a list of numbers, got a string"):
        _build(Grid, {"alphas": "0,0.5"}, "[sweep]", "sweep")
    with pytest.raises(ConfigError, match=r"^\[sweep\] seeds must be a list of integers, got a string"):
        _build(Grid, {"seeds": "1"}, "[sweep]", "sweep")


def test_job_config_takes_comma_separated_languages_and_settings(tmp_path):
    from hybrid_qdrant.evaluation.jobs import load_job

    (tmp_path / "e.toml").write_text(
        '[benchmark]\nlanguages = "de,en"\n[evaluate]\nsettings = "mono"\n', encoding="utf-8"
    )
    config = load_job(tmp_path / "e.toml")
    assert (config.benchmark.languages, config.evaluate.settings) == (("de", "en"), ("mono",))
    with pytest.raises(ConfigError, match=r"\[evaluate\] settings = 'mono,' has an empty item"):
        load_job(None, {"evaluate.settings": "mono,"})


def test_config_round_trips_through_toml(tmp_path):
    import tomli_w

    config = build({"data.sources": [{"kind": "lareqa", "name": "mlqa-r", "path": "p", "languages": ["de"]}]})
    (tmp_path / "c.toml").write_text(tomli_w.dumps(config.to_dict()), encoding="utf-8")
    assert load_config(tmp_path / "c.toml") == config


# --- failures in train(), before any model is loaded or step taken ----------------------------------------


def not_a_model(tmp_path: Path) -> str:
    """An existing directory that is no model: loading it would raise ModelError, so a ConfigError or
    DataError from train() proves the check ran before the model was touched."""
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    return str(folder)


def on_data(tmp_path: Path, jsonl: str) -> TrainConfig:
    """A config that would train ``not_a_model`` on a JSONL file holding ``jsonl``."""
    (tmp_path / "data.jsonl").write_text(jsonl, encoding="utf-8")
    return build(
        {
            "model.name": not_a_model(tmp_path),
            "data.sources": [{"kind": "jsonl", "path": str(tmp_path / "data.jsonl")}],
            "output.dir": str(tmp_path / "out"),
        }
    )


def test_cross_batches_without_parallel_groups_fail_before_the_model(tmp_path):
    config = on_data(tmp_path, '{"query": "q", "passage": "p", "lang": "en"}\n')
    with pytest.raises(ConfigError, match=r"alpha = 0.5 asks for cross-lingual batches, but .* no parallel"):
        train(config)


def test_bad_data_fails_before_the_model(tmp_path):
    config = on_data(tmp_path, '{"query": "q", "passage": "p", "lang": "en"}\n{"query": "q"\n')
    with pytest.raises(DataError, match=r"data.jsonl:2: malformed JSON"):
        train(config)


def test_a_folder_that_is_no_model_fails_before_training(tmp_path):
    config = build({"model.name": not_a_model(tmp_path), "output.dir": str(tmp_path / "out")})
    with pytest.raises(ModelError, match="cannot load model"):
        train(config)  # the data checked out; the model is the next thing checked
    assert not (tmp_path / "out").exists()


def test_half_precision_on_cpu_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    config = build({"model.name": not_a_model(tmp_path), "train.precision": "bf16"})
    with pytest.raises(ConfigError, match="precision = 'bf16' needs a CUDA GPU"):
        train(config)


def test_existing_checkpoints_need_resume(tmp_path):
    (tmp_path / "out" / "checkpoint-10").mkdir(parents=True)
    config = build({"model.name": not_a_model(tmp_path), "output.dir": str(tmp_path / "out")})
    with pytest.raises(ConfigError, match="already holds checkpoints .*resume = true"):
        train(config)


def test_command_raises_config_errors_for_the_cli_to_map(tmp_path):
    app = typer.Typer()
    app.command()(train_command)
    recipe = str(ROOT / "training" / "xlmr-hybrid.toml")
    result = CliRunner().invoke(app, [recipe, "--set", "train.alpah=1"])
    assert isinstance(result.exception, ConfigError)
    assert "did you mean 'alpha'" in str(result.exception)
    result = CliRunner().invoke(app, [recipe, "--alpha", "2"])
    assert isinstance(result.exception, ConfigError)
    assert "alpha = 2.0 is outside [0, 1]" in str(result.exception)
