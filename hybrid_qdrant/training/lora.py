"""LoRA / QLoRA adapters (peft) on a sentence-transformers model, saved so that base + adapter reload.

``apply_lora`` wraps the model's transformer in a ``peft.PeftModel``: the base weights freeze, the
adapters train. Saving the sentence-transformers model then writes the adapter only
(``adapter_config.json`` + ``adapter_model.safetensors``, peft's format, next to the tokenizer, pooling
and prompts), so the output directory is both:

- a sentence-transformers model: ``SentenceTransformer(dir)`` loads the base named in
  ``adapter_config.json`` and the adapter (``hq evaluate --model DIR``);
- an adapter for a base: ``SentenceTransformer(BASE).load_adapter(dir)``, the path of
  ``hq evaluate --model BASE --adapter DIR`` (BASE must embed like the training base: the same pooling
  and tokenizer, e.g. the sentence-transformers model that was trained).

peft is called directly rather than through transformers' ``add_adapter``, which refuses peft releases
older than its minimum even where ``load_adapter`` accepts them. QLoRA loads the frozen base in 4-bit
NF4 with double quantisation (bitsandbytes, CUDA only) and trains bf16 adapters over it (Dettmers et
al. 2023).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid_qdrant.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

    from hybrid_qdrant.training.config import LoraSection

__all__ = [
    "apply_lora",
    "is_lora_model",
    "load_adapter_weights",
    "quantization_kwargs",
    "trainable_parameters",
]

logger = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def _peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise ConfigError("[lora] needs peft: pip install 'hybrid-qdrant[lora]'") from exc
    return peft


def quantization_kwargs(compute_dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained`` options that load a base in 4-bit NF4 for QLoRA.

    Raises:
        ConfigError: no CUDA GPU, or bitsandbytes is not installed.
    """
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("[lora] qlora = true needs a CUDA GPU (bitsandbytes 4-bit); none is visible")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("[lora] qlora = true needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
    # a quantised model is placed when loaded (it cannot be moved after): this process's GPU
    device = int(os.environ.get("LOCAL_RANK", "0"))
    return {"quantization_config": config, "device_map": {"": device}}


def apply_lora(
    model: SentenceTransformer, section: LoraSection, gradient_checkpointing: bool = False, seed: int = 0
) -> int:
    """Wrap the model's transformer in LoRA adapters, in place; return the number of trainable parameters.

    The adapters' initialisation (``lora_A`` is random) is seeded by ``seed`` without touching the
    global random state, so a run and its resumed twin start from the same adapters.

    Raises:
        ModelError: the model has no transformer module, or no module matches ``target_modules``.
    """
    peft = _peft()
    transformer = model[0]
    base = getattr(transformer, "auto_model", None)
    if base is None:
        raise ModelError("LoRA needs a model whose first module is a Hugging Face transformer")
    if getattr(base, "is_loaded_in_4bit", False):
        base = peft.prepare_model_for_kbit_training(
            base,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    targets = section.target_modules
    config = peft.LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules="all-linear" if targets == ("all-linear",) else list(targets),
        bias="none",
    )
    import torch

    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            transformer.model = peft.get_peft_model(base, config)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise ModelError(f"[lora] target_modules: {exc}".splitlines()[0]) from exc
    trainable, total = trainable_parameters(model)
    logger.info(
        "LoRA r=%d alpha=%g on %s: %d trainable of %d parameters (%.3f%%)",
        section.r,
        section.alpha,
        ", ".join(targets),
        trainable,
        total,
        100.0 * trainable / max(total, 1),
    )
    return trainable


def is_lora_model(model: SentenceTransformer) -> bool:
    """Whether the model's transformer is wrapped in peft adapters by :func:`apply_lora`."""
    if importlib.util.find_spec("peft") is None:
        return False
    from peft import PeftModel

    return isinstance(getattr(model[0], "model", None), PeftModel)


def load_adapter_weights(model: SentenceTransformer, directory: str | Path) -> None:
    """Load the adapter weights saved in ``directory`` (a checkpoint) into a model from :func:`apply_lora`.

    Raises:
        ModelError: the directory holds no adapter, or its tensors do not match the model's adapters.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(directory) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise ModelError(f"no adapter weights in {directory} (expected {ADAPTER_WEIGHTS})")
    result = set_peft_model_state_dict(model[0].model, load_file(str(path)))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ModelError(
            f"adapter in {directory} does not match the model: missing {missing[:2]}, "
            f"unexpected {list(result.unexpected_keys)[:2]}"
        )
    logger.info("loaded adapter weights from %s", directory)


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total
