"""Inference backends of the encoder: torch (default), ONNX Runtime or OpenVINO, optionally int8.

The transformer inside a sentence-transformers model is exported once per (model, backend,
quantization, calibration, versions) into the export cache and run by the other runtime behind the
Transformer module (``ExportedModel``); tokenization, prompts, pooling and normalisation stay
sentence-transformers'. Which option to pick, and what each costs in quality, is measured in
``eval/results/backends/README.md``.

| backend | quantize | what runs |
|---|---|---|
| torch | none | the model as loaded (default) |
| onnx | none / int8 | ONNX Runtime, fp32 / int8 MatMul weights + dynamic activation ranges |
| openvino | none / bf16 / int8 | OpenVINO, fp32 / bfloat16 / int8 with calibrated (static) ranges |
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from pathlib import Path
from typing import Any

from hybrid_qdrant.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "QUANTIZE", "check_backend", "use_backend"]

BACKENDS = ("torch", "onnx", "openvino")
QUANTIZE = ("none", "bf16", "int8")
#: What each backend may run, and the modules it imports (the extra of the same name installs them).
SUPPORTED = {"torch": ("none",), "onnx": ("none", "int8"), "openvino": ("none", "bf16", "int8")}
PACKAGES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "nncf")}
#: Raise to re-export every cached model (a change in how exports are made).
EXPORT_FORMAT = 1


def check_backend(
    backend: str, quantize: str, device: str | None = None, calibration: str | None = None
) -> None:
    """Raise ConfigError for a backend / quantization / device combination that cannot run."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: choose {', '.join(BACKENDS)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize {quantize!r}: choose {', '.join(QUANTIZE)}")
    if quantize not in SUPPORTED[backend]:
        raise ConfigError(
            f"backend {backend} runs quantize {' or '.join(SUPPORTED[backend])}, not {quantize}"
        )
    if backend != "torch" and device not in (None, "cpu"):
        raise ConfigError(f"backend {backend} runs on the CPU only; drop --device {device}")
    if backend == "openvino" and quantize == "int8" and not calibration:
        raise ConfigError(
            "openvino int8 needs calibration texts: --calibration PATH (e.g. MLQA-R for XQuAD-R)"
        )


def require(backend: str) -> None:
    """Import the backend's packages; ConfigError naming the extra to install if one is missing."""
    for name in PACKAGES.get(backend, ()):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"backend {backend} needs the {name} package: pip install 'hybrid-qdrant[{backend}]' ({exc})"
            ) from exc


def use_backend(
    model,
    backend: str,
    quantize: str,
    identity: dict[str, Any],
    calibration=None,
    export_root: str | Path | None = None,
) -> str:
    """Run ``model``'s transformer (a loaded SentenceTransformer, first module a Transformer) on
    ``backend``, in place; the export is made once and cached.

    Args:
        identity: what identifies the model's weights (the encoder fingerprint's model and adapter).
        calibration: ``CalibrationTexts`` for static int8, prefixes applied.
        export_root: export cache folder (default ``$HQ_CACHE_DIR/backends``).

    Returns:
        What runs, for the encoder's fingerprint: ``torch/none``, ``onnx/int8``, ``openvino/none``,
        ``openvino/bf16``, ``openvino/int8+bf16`` (int8 with the rest at the CPU's best precision)...

    Raises:
        ConfigError: an unsupported combination, or the backend's package is missing.
        ModelError: the model cannot be exported (not a text Transformer, or the exporter fails).
    """
    check_backend(backend, quantize, calibration="given" if calibration else None)
    if backend == "torch":
        return f"{backend}/{quantize}"
    require(backend)
    from hybrid_qdrant.backends.export_cache import cached_export
    from hybrid_qdrant.backends.exported_model import INPUT_NAMES, ExportedModel

    static = backend == "openvino" and quantize == "int8"  # calibrated; onnx int8 is dynamic
    transformer = _text_transformer(model)
    hf_model = transformer.model
    example = transformer.preprocess(["query: an example", "passage: a somewhat longer example text"])
    names = [name for name in INPUT_NAMES if name in example]
    unknown = sorted(k for k, v in example.items() if k not in names and hasattr(v, "shape"))
    if "input_ids" not in names or "attention_mask" not in names or unknown:
        raise ModelError(f"backend {backend}: the tokenizer gives inputs {sorted(example)}, not ids + mask")
    parts = {
        **identity,
        "backend": backend,
        "quantize": quantize,
        "inputs": names,
        "calibration": calibration.digest if static else None,
        "versions": _versions(backend),
        "format": EXPORT_FORMAT,
    }
    tensors = {name: example[name] for name in names}

    def build(folder: Path) -> None:
        hf_model.eval()
        if backend == "onnx":
            from hybrid_qdrant.backends.onnx_backend import export_onnx

            export_onnx(hf_model, tensors, folder, quantize)
        else:
            from hybrid_qdrant.backends.openvino_backend import export_openvino

            items = []
            if static:
                for text in calibration.texts:  # one text per item: no padding in the ranges
                    features = transformer.preprocess([text])
                    items.append({name: features[name].numpy() for name in names})
            export_openvino(hf_model, tensors, folder, quantize, items)

    folder = cached_export(parts, build, export_root)
    if backend == "onnx":
        from hybrid_qdrant.backends.onnx_backend import onnx_runner

        run, label = onnx_runner(folder), f"{backend}/{quantize}"
    else:
        from hybrid_qdrant.backends.openvino_backend import openvino_runner

        precision = {"none": "f32", "bf16": "bf16", "int8": None}[quantize]
        run, ran = openvino_runner(folder, precision)
        label = f"{backend}/{quantize}" + (f"+{ran}" if quantize == "int8" else "")
    transformer.model = ExportedModel(run, hf_model.config, names, f"{label} from {folder}", folder)
    logger.info("encoder runs on %s (%s)", label, folder)
    return label


def _text_transformer(model):
    """The model's first module if it is a text Transformer whose forward gives ``last_hidden_state``."""
    from sentence_transformers.base.modules.transformer import Transformer

    first = model[0] if len(model) else None
    if not isinstance(first, Transformer):
        raise ModelError(f"backends need a Transformer first module, got {type(first).__name__}")
    text = getattr(first, "modality_config", {}).get("text", {})
    if text.get("method") != "forward" or text.get("method_output_name") != "last_hidden_state":
        raise ModelError(f"backends need a text encoder whose forward gives last_hidden_state, got {text}")
    return first


def _versions(backend: str) -> dict[str, str]:
    """Versions of the packages an export depends on (a new one re-exports)."""
    names = ("torch", "transformers", *PACKAGES.get(backend, ()))
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "?"
    return out
