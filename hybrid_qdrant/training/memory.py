"""Will a training config fit on a GPU? A memory estimate before launching: weights, trainable weights,
gradients, AdamW states, activations and buffers per GPU, under DDP, ZeRO-2 or FSDP / ZeRO-3.

The model's shape comes from a known name (:data:`SHAPES`), a ``config.json`` or a model directory.
What is counted, per GPU, in bytes:

- weights: every parameter at the weight dtype (QLoRA: the transformer blocks' linear weights in 4-bit
  NF4 with double quantisation, 4.127 bits each; the rest at the compute dtype);
- trainable weights, gradients and AdamW's two moments: LoRA adapters train in fp32 (peft keeps them
  there), so 4 + 4 + 8 bytes per adapter parameter; a full fine-tune at the weight dtype (fp32 under
  mixed precision, the default: 4 + 4 + 8 bytes per parameter; torch's AdamW keeps its moments in the
  parameter's dtype and no separate master copy); with ``[train] freeze_embeddings`` the token-embedding
  matrix (vocab x hidden) has weights only: no gradient, no moments;
- activations of one forward: ``tokens = micro batch x texts per example x sequence length``, where the
  micro batch is the cached loss' ``mini_batch_size`` (one text column at a time) or the whole per-device
  batch (every column at once); per token and layer, the tensors autograd keeps, with memory-efficient
  attention (SDPA / flash, no sequence x sequence scores). A decoder block (RMSNorm, rotary, SwiGLU,
  grouped-query attention) keeps ``7h + 3kv + 4i`` values plus two fp32 norm inputs (``8h`` bytes) in
  16-bit training; an encoder block (BERT) ``8h + 2i`` values plus ``2h`` one-byte dropout masks
  (Korthikanti et al. 2022, without the attention-score terms). LoRA dropout keeps each adapted module's
  input again, with a one-byte mask. With gradient checkpointing only each layer's input is kept, plus
  one layer's full set while it is recomputed;
- sharding over N GPUs: DDP replicates everything; ZeRO-2 shards gradients and optimizer states; FSDP /
  ZeRO-3 also shards the weights and gathers two layers at a time (the running one and the prefetched);
- a fixed 1.5 GiB for the CUDA context, library workspaces and communication buffers.

A config fits when the total is at most 90 % of the GPU's memory (the rest: allocator fragmentation).
Biases and position tables of decoders are left out (under 0.1 % of the parameters).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid_qdrant.errors import ConfigError

if TYPE_CHECKING:
    from hybrid_qdrant.training.config import TrainConfig

__all__ = [
    "SHAPES",
    "FitError",
    "MemoryEstimate",
    "ModelShape",
    "Setup",
    "check_fit",
    "estimate",
    "parameter_count",
    "parse_memory",
    "resolve_shape",
    "setup_from_config",
]

GIB = 1024**3
STRATEGIES = ("ddp", "zero2", "fsdp")
#: Fraction of a GPU's memory a run may plan to use.
USABLE = 0.90
OVERHEAD_BYTES = int(1.5 * GIB)
#: NF4 with double quantisation: 4 bits, an 8-bit absmax per 64 weights, an fp32 constant per 256 blocks.
QLORA_BITS = 4 + 8 / 64 + 32 / (64 * 256)
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ADAPTER_BYTES = 4  # peft keeps adapters in fp32


class FitError(ConfigError):
    """The config does not fit on the GPUs it was checked against (a one-line reason)."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes that decide memory: a Llama-style decoder or a BERT-style encoder.

    Attributes:
        name: a label.
        layers / hidden / intermediate / vocab / heads / kv_heads: the transformer's shape.
        architecture: ``decoder`` (RMSNorm, rotary, gated MLP, no biases) or ``encoder`` (LayerNorm,
            learned positions, GELU MLP, biases, pooler).
        positions: learned position embeddings (encoders).
    """

    name: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int = 0
    architecture: str = "decoder"
    positions: int = 0

    def __post_init__(self) -> None:
        if self.architecture not in ("decoder", "encoder"):
            raise ConfigError(f"architecture {self.architecture!r} is not 'decoder' or 'encoder'")
        if min(self.layers, self.hidden, self.intermediate, self.vocab, self.heads) < 1:
            raise ConfigError(f"shape {self.name}: every size must be >= 1")
        if not self.kv_heads:
            object.__setattr__(self, "kv_heads", self.heads)

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def linears(self) -> dict[str, tuple[int, int]]:
        """Each linear module of one block: qualified name -> (in features, out features)."""
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        if self.architecture == "decoder":
            return {
                "self_attn.q_proj": (h, h),
                "self_attn.k_proj": (h, kv),
                "self_attn.v_proj": (h, kv),
                "self_attn.o_proj": (h, h),
                "mlp.gate_proj": (h, i),
                "mlp.up_proj": (h, i),
                "mlp.down_proj": (i, h),
            }
        return {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (h, i),
            "output.dense": (i, h),
        }

    @property
    def linear_params(self) -> int:
        """Weights of the linear modules of all blocks (what QLoRA quantises)."""
        return self.layers * sum(a * b for a, b in self.linears().values())

    @property
    def layer_params(self) -> int:
        linear = sum(a * b for a, b in self.linears().values())
        if self.architecture == "decoder":
            return linear + 2 * self.hidden  # two RMSNorm weights
        biases = sum(b for _, b in self.linears().values())
        return linear + biases + 4 * self.hidden  # two LayerNorms, weight and bias

    @property
    def embedding_params(self) -> int:
        if self.architecture == "decoder":
            return self.vocab * self.hidden + self.hidden  # tokens + final norm
        pooler = self.hidden * self.hidden + self.hidden
        return (self.vocab + self.positions + 2) * self.hidden + 2 * self.hidden + pooler

    @property
    def params(self) -> int:
        return self.embedding_params + self.layers * self.layer_params

    def describe(self) -> str:
        return (
            f"{self.name}: {self.params / 1e9:.2f} B parameters ({self.layers} layers, "
            f"hidden {self.hidden}, MLP {self.intermediate}, vocab {self.vocab}, "
            f"{self.heads}/{self.kv_heads} heads, {self.architecture})"
        )


#: Known shapes (from the models' config.json files).
SHAPES = {
    "mistral-7b": ModelShape("mistral-7b", 32, 4096, 14336, 32000, 32, 8),
    "yi-34b": ModelShape("yi-34b", 60, 7168, 20480, 64000, 56, 8),
    "codellama-34b": ModelShape("codellama-34b", 48, 8192, 22016, 32000, 64, 8),
    "xlm-roberta-large": ModelShape("xlm-roberta-large", 24, 1024, 4096, 250002, 16, 16, "encoder", 514),
    "labse": ModelShape("labse", 12, 768, 3072, 501153, 12, 12, "encoder", 512),
    "multilingual-e5-small": ModelShape(
        "multilingual-e5-small", 12, 384, 1536, 250037, 12, 12, "encoder", 512
    ),
}
#: Hub ids (lower case, any part) -> known shape.
ALIASES = {
    "e5-mistral-7b": "mistral-7b",
    "mistral-7b": "mistral-7b",
    "yi-34b": "yi-34b",
    "codellama-34b": "codellama-34b",
    "xlm-roberta-large": "xlm-roberta-large",
    "labse": "labse",
    "multilingual-e5-small": "multilingual-e5-small",
    "me5-small": "multilingual-e5-small",
}
_ENCODER_TYPES = ("bert", "xlm-roberta", "roberta", "electra", "deberta", "deberta-v2", "mpnet")


def shape_from_config(path: str | Path, name: str | None = None) -> ModelShape:
    """The shape in a Hugging Face ``config.json`` (or the directory holding one).

    Raises:
        ConfigError: no such file, or it lacks the sizes.
    """
    path = Path(path).expanduser()
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"no config.json at {path}")
    cfg = json.loads(file.read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    try:
        encoder = cfg.get("model_type", "").replace("_", "-") in _ENCODER_TYPES
        return ModelShape(
            name=name or (path.name if path.is_dir() else path.parent.name),
            layers=cfg["num_hidden_layers"],
            hidden=cfg["hidden_size"],
            intermediate=cfg["intermediate_size"],
            vocab=cfg["vocab_size"],
            heads=cfg["num_attention_heads"],
            kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
            architecture="encoder" if encoder else "decoder",
            positions=cfg.get("max_position_embeddings", 0) if encoder else 0,
        )
    except KeyError as exc:
        raise ConfigError(f"{file} has no {exc.args[0]!r}: name a known shape instead") from exc


def resolve_shape(model: str) -> ModelShape:
    """A known shape name, a hub id containing one, a ``config.json``, or a model directory.

    Raises:
        ConfigError: none of these.
    """
    key = model.strip().lower()
    if key in SHAPES:
        return SHAPES[key]
    path = Path(model).expanduser()
    if path.exists():
        return shape_from_config(path)
    for alias, shape in ALIASES.items():
        if alias in key:
            return SHAPES[shape]
    raise ConfigError(
        f"unknown model shape {model!r}: give --shape with one of {', '.join(SHAPES)} or a config.json path"
    )


def parameter_count(model_dir: str | Path) -> int:
    """Exact parameter count of a local model directory, from its safetensors headers (no weights read).

    Raises:
        ConfigError: the directory holds no ``*.safetensors``.
    """
    files = sorted(Path(model_dir).expanduser().rglob("*.safetensors"))
    if not files:
        raise ConfigError(f"no *.safetensors in {model_dir} to count parameters from")
    total = 0
    for file in files:
        with file.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def parse_memory(text: str) -> int:
    """``80GB``, ``80G``, ``80GiB`` or ``80`` -> bytes; GB means GiB (what ``nvidia-smi`` reports in).

    Raises:
        ConfigError: not a positive size.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(g|gb|gib)?\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"GPU memory {text!r} is not a size like 80GB")
    return int(float(match.group(1)) * GIB)


@dataclass(frozen=True)
class Setup:
    """One training setup to check: model, adapters, precision, batch and devices.

    Attributes:
        shape: the model.
        lora_r / lora_targets / lora_dropout / qlora: adapters (r = 0: full fine-tuning).
        freeze_embeddings: full fine-tuning with the token-embedding matrix (vocab x hidden) fixed: it
            has weights but no gradients and no AdamW moments (``[train] freeze_embeddings``).
        weight_dtype: ``fp32`` / ``bf16`` / ``fp16`` weights (QLoRA's compute dtype).
        activation_bytes: 2 under bf16 / fp16 mixed precision, 4 in fp32.
        gradient_checkpointing: keep layer inputs only, recompute the rest.
        micro_batch: examples per forward (the cached loss' mini batch, else the per-device batch).
        texts_per_forward: text columns in one forward (1 with the cached loss, else 2 or 3).
        texts_per_example: query, passage and negative (3) or no negative (2).
        seq_len: tokens per text (an upper bound: every text at the truncation length).
        batch_size: examples per device per step (for the loss' similarity matrix).
        gpus / strategy / gpu_memory: devices, ``ddp`` / ``zero2`` / ``fsdp``, bytes per GPU.
    """

    shape: ModelShape
    weight_dtype: str = "bf16"
    activation_bytes: int = 2
    lora_r: int = 0
    lora_targets: tuple[str, ...] = ("all-linear",)
    lora_dropout: float = 0.0
    qlora: bool = False
    freeze_embeddings: bool = False
    gradient_checkpointing: bool = True
    micro_batch: int = 8
    texts_per_forward: int = 3
    texts_per_example: int = 3
    seq_len: int = 512
    batch_size: int = 8
    gpus: int = 1
    strategy: str = "ddp"
    gpu_memory: int = 80 * GIB

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        if self.weight_dtype not in DTYPE_BYTES:
            raise ConfigError(f"weight dtype {self.weight_dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
        for key in ("micro_batch", "seq_len", "batch_size", "gpus", "gpu_memory"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1")
        if self.qlora and not self.lora_r:
            raise ConfigError("QLoRA needs LoRA adapters (lora_r >= 1)")

    def adapted(self) -> dict[str, tuple[int, int]]:
        """The linear modules of one block that carry adapters (peft's suffix match on module names)."""
        linears = self.shape.linears()
        if not self.lora_r:
            return {}
        if self.lora_targets == ("all-linear",):
            return linears
        out = {}
        for target in self.lora_targets:
            hits = {n: s for n, s in linears.items() if n == target or n.endswith("." + target)}
            if not hits:
                known = sorted({n.rsplit(".", 1)[-1] for n in linears})
                raise ConfigError(
                    f"LoRA target {target!r} matches no module of a {self.shape.architecture} block; "
                    f"its modules: {', '.join(known)}"
                )
            out.update(hits)
        return out

    @property
    def frozen_embedding_params(self) -> int:
        """Token-embedding weights kept fixed in a full fine-tune (LoRA freezes the whole base anyway)."""
        return self.shape.vocab * self.shape.hidden if self.freeze_embeddings and not self.lora_r else 0

    @property
    def trainable_params(self) -> int:
        if not self.lora_r:
            return self.shape.params - self.frozen_embedding_params
        return self.shape.layers * sum(self.lora_r * (a + b) for a, b in self.adapted().values())


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU by component, the total and whether it fits."""

    setup: Setup
    components: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.components.values())

    @property
    def budget(self) -> int:
        return int(USABLE * self.setup.gpu_memory)

    @property
    def fits(self) -> bool:
        return self.total <= self.budget

    def describe(self) -> str:
        """The breakdown as text: the setup, one line per component, the verdict."""
        s = self.setup
        if s.lora_r:
            base = "4-bit NF4 (QLoRA)" if s.qlora else s.weight_dtype
            mode = (
                f"LoRA r={s.lora_r} on {', '.join(s.lora_targets)}: "
                f"{s.trainable_params / 1e6:.1f} M trainable (fp32), frozen base in {base}"
            )
        elif s.frozen_embedding_params:
            mode = (
                f"full fine-tuning of {s.trainable_params / 1e9:.2f} B of {s.shape.params / 1e9:.2f} B "
                f"parameters in {s.weight_dtype} (token embeddings {s.shape.vocab} x {s.shape.hidden} frozen)"
            )
        else:
            mode = f"full fine-tuning of {s.trainable_params / 1e9:.2f} B parameters in {s.weight_dtype}"
        tokens = s.micro_batch * s.texts_per_forward * s.seq_len
        sharding = {
            "ddp": "everything replicated",
            "zero2": f"gradients and optimizer states sharded {s.gpus} ways",
            "fsdp": f"weights, gradients and optimizer states sharded {s.gpus} ways",
        }[s.strategy]
        lines = [
            f"model       {s.shape.describe()}",
            f"training    {mode}; AdamW; activations {s.activation_bytes * 8}-bit",
            f"forward     {s.micro_batch} examples x {s.texts_per_forward} text(s) x {s.seq_len} tokens = "
            f"{tokens:,} tokens; gradient checkpointing {'on' if s.gradient_checkpointing else 'off'}",
            f"devices     {s.gpus} x {s.gpu_memory / GIB:.0f} GiB, {s.strategy} ({sharding})",
            "",
            f"{'per GPU':<40}{'GiB':>9}",
        ]
        lines += [f"{name:<40}{value / GIB:>9.2f}" for name, value in self.components.items()]
        lines += [
            f"{'total':<40}{self.total / GIB:>9.2f}",
            f"{f'usable ({USABLE:.0%} of {s.gpu_memory / GIB:.0f} GiB)':<40}{self.budget / GIB:>9.2f}",
            "",
            ("fits" if self.fits else "does not fit")
            + f": {self.total / GIB:.1f} GiB of {self.budget / GIB:.1f} GiB usable per GPU",
        ]
        return "\n".join(lines)

    def refusal(self) -> str:
        """One line: what does not fit, by how much, and what would help."""
        s = self.setup
        what = f"LoRA r={s.lora_r}" if s.lora_r else "full fine-tuning"
        if s.qlora:
            what = f"QLoRA r={s.lora_r}"
        hints = []
        if not s.lora_r:
            hints.append("LoRA ([lora])")
        elif not s.qlora and s.shape.architecture == "decoder":
            hints.append("QLoRA ([lora] qlora = true)")
        if s.strategy != "fsdp":
            hints.append("FSDP over more GPUs (--strategy fsdp --gpus N)")
        if not s.gradient_checkpointing:
            hints.append("gradient checkpointing")
        if s.micro_batch > 1:
            hints.append("a smaller batch or the cached loss' mini_batch_size")
        return (
            f"does not fit: {what} of {s.shape.name} ({s.shape.params / 1e9:.2f} B parameters) needs "
            f"{self.total / GIB:.1f} GiB per GPU, {self.budget / GIB:.1f} GiB usable on {s.gpus} x "
            f"{s.gpu_memory / GIB:.0f} GiB ({s.strategy}); try " + ", ".join(hints)
        )


def _activation_bytes_per_token_layer(setup: Setup) -> float:
    """Bytes autograd keeps per token in one block (memory-efficient attention)."""
    s, a = setup.shape, setup.activation_bytes
    h, kv, i = s.hidden, s.kv_dim, s.intermediate
    if s.architecture == "decoder":
        kept = a * (7 * h + 3 * kv + 4 * i) + (8 * h if a == 2 else 0)  # + fp32 RMSNorm inputs
    else:
        kept = a * (8 * h + 2 * i) + 2 * h  # + one-byte dropout masks
    for in_features, _ in setup.adapted().values():
        kept += a * setup.lora_r  # the adapter's low-rank activation
        if setup.lora_dropout > 0:
            kept += (a + 1) * in_features  # dropped-out input and its mask
    return kept


def estimate(setup: Setup) -> MemoryEstimate:
    """Bytes per GPU for one setup."""
    s, shape = setup, setup.shape
    n = s.gpus
    weight_bytes = DTYPE_BYTES[s.weight_dtype]
    if s.qlora:
        weights = shape.linear_params * QLORA_BITS / 8 + (shape.params - shape.linear_params) * weight_bytes
    else:
        weights = shape.params * weight_bytes
    if s.lora_r:
        trainable_bytes = s.trainable_params * ADAPTER_BYTES
        state_bytes = trainable_bytes  # gradient, and each AdamW moment, at the adapter dtype
    else:
        trainable_bytes = 0  # the weights are the trainable parameters
        state_bytes = s.trainable_params * weight_bytes  # frozen token embeddings: no gradient, no moments
    gradients, optimizer = state_bytes, 2 * state_bytes
    shard_weights = s.strategy == "fsdp"
    shard_states = s.strategy in ("zero2", "fsdp")
    components = {
        f"weights ({'4-bit + ' if s.qlora else ''}{s.weight_dtype})": weights / (n if shard_weights else 1),
    }
    if s.lora_r:
        components["LoRA adapters (fp32)"] = trainable_bytes / (n if shard_weights else 1)
    components["gradients"] = gradients / (n if shard_states else 1)
    components["AdamW moments (2 per parameter)"] = optimizer / (n if shard_states else 1)

    tokens = s.micro_batch * s.texts_per_forward * s.seq_len
    per_layer = _activation_bytes_per_token_layer(s)
    if s.gradient_checkpointing:
        activations = tokens * (shape.layers * shape.hidden * s.activation_bytes + per_layer)
    else:
        activations = tokens * shape.layers * per_layer
    activations += tokens * shape.hidden * s.activation_bytes  # the embedding output
    components["activations"] = activations
    # the loss: gathered fp32 embeddings, and each local query against every passage and negative
    embeddings = s.batch_size * n * s.texts_per_example * shape.hidden
    similarities = s.batch_size * s.batch_size * n * (s.texts_per_example - 1)
    components["loss (embeddings, similarities)"] = 4 * (embeddings + 2 * similarities)
    if shard_weights and n > 1:  # two gathered layers: the running one and the prefetched one
        components["FSDP gathered layers (2)"] = 2 * shape.layer_params * weight_bytes
    components["CUDA context, workspaces, buffers"] = OVERHEAD_BYTES
    return MemoryEstimate(setup, {k: int(math.ceil(v)) for k, v in components.items()})


def check_fit(result: MemoryEstimate) -> None:
    """Raise :class:`FitError` with the one-line refusal when the estimate does not fit."""
    if not result.fits:
        raise FitError(result.refusal())


def setup_from_config(
    config: TrainConfig,
    *,
    gpu_memory: int,
    gpus: int = 1,
    strategy: str = "ddp",
    shape: ModelShape | None = None,
    seq_len: int | None = None,
) -> Setup:
    """The setup a training config asks for, on ``gpus`` GPUs of ``gpu_memory`` bytes.

    Precision ``auto`` is taken as bf16 (a GPU that has it); ``[model] dtype = "auto"`` as the trainer
    resolves it there: bf16 weights under LoRA, fp32 otherwise. With ``[data] negatives = "auto"`` a
    hard negative is assumed (3 texts per example, the upper bound).

    Raises:
        ConfigError: no sequence length (``[model] max_seq_length = 0`` and no ``seq_len``).
    """
    t, m, lora = config.train, config.model, config.lora
    precision = "bf16" if t.precision == "auto" else t.precision
    if m.dtype != "auto":
        weight_dtype = m.dtype
    else:
        weight_dtype = "bf16" if lora is not None and precision == "bf16" else "fp32"
    length = seq_len or m.max_seq_length
    if not length:
        raise ConfigError("[model] max_seq_length is 0: give --seq-len for the estimate")
    texts = 2 if config.data.negatives == "ignore" else 3
    cached = config.loss.cached
    return Setup(
        shape=shape or resolve_shape(m.name),
        weight_dtype=weight_dtype,
        activation_bytes=4 if precision == "fp32" else 2,
        lora_r=lora.r if lora else 0,
        lora_targets=lora.target_modules if lora else ("all-linear",),
        lora_dropout=lora.dropout if lora else 0.0,
        qlora=bool(lora and lora.qlora),
        freeze_embeddings=t.freeze_embeddings,
        gradient_checkpointing=t.gradient_checkpointing,
        micro_batch=config.loss.mini_batch_size if cached else t.batch_size,
        texts_per_forward=1 if cached else texts,
        texts_per_example=texts,
        seq_len=length,
        batch_size=t.batch_size,
        gpus=gpus,
        strategy=strategy,
        gpu_memory=gpu_memory,
    )
