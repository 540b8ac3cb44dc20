"""The fit estimate: hand-checked bytes for a small decoder, known model sizes, the 7B and 34B recipes, and
``hq fit``'s one-line refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.training.config import load_config
from hybrid_qdrant.training.memory import (
    GIB,
    OVERHEAD_BYTES,
    SHAPES,
    FitError,
    ModelShape,
    Setup,
    check_fit,
    estimate,
    parameter_count,
    parse_memory,
    resolve_shape,
    setup_from_config,
)

ROOT = Path(__file__).resolve().parents[1]
E5_MISTRAL = ROOT / "training" / "e5-mistral-7b-lora-hybrid.toml"
YI = ROOT / "training" / "yi-34b-lora-hybrid.toml"
# layers 2, hidden 8, MLP 16, vocab 10, 2 heads of 4, 1 kv head (kv width 4)
SMALL = ModelShape("small", layers=2, hidden=8, intermediate=16, vocab=10, heads=2, kv_heads=1)


def test_small_decoder_parameters_by_hand():
    # per block: q 8x8 + k 8x4 + v 8x4 + o 8x8 + gate 8x16 + up 8x16 + down 16x8 = 576, two norms 16
    assert SMALL.layer_params == 576 + 16
    assert SMALL.params == 10 * 8 + 8 + 2 * 592  # embeddings, final norm, blocks = 1272
    lora = Setup(SMALL, lora_r=2)
    # r x (in + out) per module: q 32, k 24, v 24, o 32, gate 48, up 48, down 48 = 256 a block
    assert lora.trainable_params == 2 * 256
    assert Setup(SMALL, lora_r=2, lora_targets=("q_proj", "v_proj")).trainable_params == 2 * (32 + 24)


def test_small_decoder_memory_by_hand():
    setup = Setup(
        SMALL,
        weight_dtype="bf16",
        activation_bytes=2,
        lora_r=2,
        gradient_checkpointing=False,
        micro_batch=2,
        texts_per_forward=3,
        texts_per_example=3,
        seq_len=4,
        batch_size=2,
        gpu_memory=GIB,
    )
    got = estimate(setup).components
    tokens = 2 * 3 * 4
    # kept per token and block: 2 bytes x (7h + 3kv + 4i) + 8h (fp32 norm inputs) + 2 bytes x r per adapter
    per_layer = 2 * (7 * 8 + 3 * 4 + 4 * 16) + 8 * 8 + 7 * 2 * 2
    assert per_layer == 356
    assert got == {
        "weights (bf16)": 1272 * 2,
        "LoRA adapters (fp32)": 512 * 4,
        "gradients": 512 * 4,
        "AdamW moments (2 per parameter)": 512 * 8,
        "activations": tokens * 2 * per_layer + tokens * 8 * 2,  # + the embedding output
        "loss (embeddings, similarities)": 4 * (2 * 3 * 8 + 2 * (2 * 2 * 2)),
        "CUDA context, workspaces, buffers": OVERHEAD_BYTES,
    }
    checkpointed = estimate(Setup(**{**setup.__dict__, "gradient_checkpointing": True})).components
    # layer inputs only (2 layers x h x 2 bytes), plus one layer recomputed
    assert checkpointed["activations"] == tokens * (2 * 8 * 2 + per_layer) + tokens * 8 * 2


def test_sharding_divides_what_it_shards():
    base = Setup(SHAPES["mistral-7b"], weight_dtype="fp32", gpus=8, micro_batch=1, seq_len=128, batch_size=1)
    ddp = estimate(base).components
    zero2 = estimate(Setup(**{**base.__dict__, "strategy": "zero2"})).components
    fsdp = estimate(Setup(**{**base.__dict__, "strategy": "fsdp"})).components
    assert zero2["weights (fp32)"] == ddp["weights (fp32)"]
    assert zero2["AdamW moments (2 per parameter)"] == pytest.approx(
        ddp["AdamW moments (2 per parameter)"] / 8, 1
    )
    assert fsdp["weights (fp32)"] == pytest.approx(ddp["weights (fp32)"] / 8, abs=1)
    assert "FSDP gathered layers (2)" in fsdp and "FSDP gathered layers (2)" not in ddp


def test_known_shapes_have_the_published_sizes():
    assert SHAPES["mistral-7b"].params == pytest.approx(7.11e9, rel=2e-3)  # E5-Mistral-7B: 7.11 B
    assert SHAPES["yi-34b"].params == pytest.approx(33.93e9, rel=2e-3)  # 34.39 B with its LM head
    assert SHAPES["xlm-roberta-large"].params == pytest.approx(560e6, rel=5e-3)
    # LoRA r = 16 on every linear module of Mistral-7B: the well-known 41,943,040
    assert Setup(SHAPES["mistral-7b"], lora_r=16).trainable_params == 41_943_040
    assert resolve_shape("intfloat/e5-mistral-7b-instruct") == SHAPES["mistral-7b"]
    assert resolve_shape("01-ai/Yi-34B") == SHAPES["yi-34b"]


def test_shape_from_a_config_json_and_an_exact_count(tmp_path):
    config = {
        "model_type": "llama",
        "num_hidden_layers": 2,
        "hidden_size": 8,
        "intermediate_size": 16,
        "vocab_size": 10,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert resolve_shape(str(tmp_path)) == ModelShape(tmp_path.name, 2, 8, 16, 10, 2, 1)
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, str(tmp_path / "model.safetensors"))
    assert parameter_count(tmp_path) == 17


def test_e5_mistral_7b_lora_fits_one_80gb_gpu():
    setup = setup_from_config(load_config(E5_MISTRAL), gpu_memory=parse_memory("80GB"), gpus=1)
    assert setup.weight_dtype == "bf16" and setup.gradient_checkpointing and setup.lora_r == 16
    result = estimate(setup)
    assert result.fits and 20 * GIB < result.total < 40 * GIB
    check_fit(result)  # no error
    assert "fits:" in result.describe().splitlines()[-1]


def test_frozen_token_embeddings_carry_no_gradients_nor_adamw_moments():
    # training/cpu-small.toml: multilingual-e5-small (117,653,760 parameters, 250037 x 384 token embeddings)
    # in fp32 with freeze_embeddings = true; 21,639,552 parameters train
    config = load_config(
        ROOT / "training" / "cpu-small.toml", {"model.name": "intfloat/multilingual-e5-small"}
    )
    assert config.train.freeze_embeddings and config.lora is None
    frozen = setup_from_config(config, gpu_memory=16 * GIB)
    assert frozen.weight_dtype == "fp32" and frozen.frozen_embedding_params == 250037 * 384
    assert frozen.trainable_params == 117_653_760 - 96_014_208 == 21_639_552
    parts = estimate(frozen).components
    assert parts["weights (fp32)"] == 117_653_760 * 4  # the frozen matrix is still held
    assert parts["gradients"] == 21_639_552 * 4
    assert parts["AdamW moments (2 per parameter)"] == 21_639_552 * 8
    assert "0.02 B of 0.12 B parameters in fp32 (token embeddings 250037 x 384 frozen)" in (
        estimate(frozen).describe()
    )
    every = estimate(Setup(**{**frozen.__dict__, "freeze_embeddings": False})).components
    assert (
        every["gradients"] == 117_653_760 * 4 and every["AdamW moments (2 per parameter)"] == 117_653_760 * 8
    )
    lora = Setup(**{**frozen.__dict__, "lora_r": 8})  # LoRA freezes the whole base already
    assert (
        lora.frozen_embedding_params == 0
        and estimate(lora).components["gradients"] == lora.trainable_params * 4
    )


def test_34b_full_fine_tuning_is_refused_on_one_80gb_gpu_in_one_line():
    config = load_config(YI)
    full = setup_from_config(config, gpu_memory=80 * GIB, gpus=1)
    full = Setup(**{**full.__dict__, "lora_r": 0, "weight_dtype": "fp32"})
    result = estimate(full)
    assert result.total > 500 * GIB  # 16 bytes a parameter before activations
    with pytest.raises(FitError) as info:
        check_fit(result)
    message = str(info.value)
    assert "\n" not in message and message.startswith("does not fit: full fine-tuning of yi-34b")
    assert "try LoRA" in message


def test_34b_lora_needs_fsdp_or_qlora():
    config = load_config(YI)
    one = estimate(setup_from_config(config, gpu_memory=80 * GIB, gpus=1))
    assert not one.fits and "QLoRA" in one.refusal()
    assert estimate(setup_from_config(config, gpu_memory=80 * GIB, gpus=8, strategy="fsdp")).fits
    qlora = load_config(YI, {"lora.qlora": True, "loss.cached": True, "train.batch_size": 128})
    assert estimate(setup_from_config(qlora, gpu_memory=80 * GIB, gpus=1)).fits


def test_hq_fit_prints_the_breakdown_and_refuses_with_one_line():
    from hybrid_qdrant.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["fit", str(E5_MISTRAL), "--gpu-memory", "80GB", "--gpus", "4"])
    assert ok.exit_code == 0, ok.output
    assert "weights (bf16)" in ok.output and "fits: " in ok.output
    refused = runner.invoke(app, ["fit", str(YI), "--gpu-memory", "80GB", "--gpus", "1"])
    assert refused.exit_code == 2
    errors = [line for line in refused.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: does not fit: LoRA r=16 of yi-34b")
    full = runner.invoke(app, ["fit", str(YI), "--gpu-memory", "80GB", "--gpus", "8", "--full-finetune"])
    assert full.exit_code == 2 and "error: does not fit: full fine-tuning of yi-34b" in full.output


@pytest.mark.parametrize(
    ("text", "expected"), [("80GB", 80 * GIB), ("80", 80 * GIB), ("141 GiB", 141 * GIB), ("0.5g", GIB // 2)]
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_memory("lots"), "is not a size like 80GB"),
        (lambda: resolve_shape("org/unknown-model"), "unknown model shape 'org/unknown-model'"),
        (lambda: Setup(SMALL, lora_r=2, lora_targets=("query",)).trainable_params, "matches no module"),
        (lambda: Setup(SMALL, strategy="zero3"), "strategy 'zero3' is not one of"),
    ],
)
def test_refusals(call, message):
    with pytest.raises(ConfigError) as info:
        call()
    assert message in str(info.value)
