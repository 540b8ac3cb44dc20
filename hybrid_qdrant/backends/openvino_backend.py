"""OpenVINO: the transformer converted from torch (``openvino.convert_model``), int8 by static NNCF
calibration.

Precision is explicit, and the one that runs is part of the encoder's fingerprint: ``none`` runs fp32
(``INFERENCE_PRECISION_HINT: f32``; OpenVINO's own default is bf16 on CPUs with avx512_bf16 or AMX, so
a default would give other vectors on another CPU), ``bf16`` asks for bfloat16 and fails where the CPU
has none, ``int8`` quantizes weights and activations of the matrix products with ranges calibrated on
held-out texts (NNCF, transformer preset with SmoothQuant) and runs what stays unquantized (softmax,
layer norms, GELU) in bf16 where the CPU has it, else f32 (measured: bf16 there costs nothing in
quality and gains 20 %). Needs ``pip install hybrid-qdrant[openvino]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hybrid_qdrant.backends.exported_model import TokenEmbeddings
from hybrid_qdrant.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

FILE = "model.xml"  # and model.bin beside it


def export_openvino(
    model: torch.nn.Module,
    example: dict[str, torch.Tensor],
    folder: Path,
    quantize: str,
    calibration: Sequence[dict[str, np.ndarray]] = (),
) -> None:
    """Write ``folder/model.xml`` (+ ``.bin``): ``model`` converted in fp32, or int8 (static, calibrated)."""
    import openvino as ov

    names = list(example)
    wrapped = TokenEmbeddings(model).eval()
    try:
        with torch.no_grad():
            converted = ov.convert_model(
                wrapped,
                example_input=tuple(example[name] for name in names),
                input=[(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in names],
            )
    except Exception as exc:
        raise ModelError(
            f"cannot convert the model to OpenVINO: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    if quantize == "int8":
        converted = _quantize_static(converted, calibration)
    ov.save_model(converted, str(folder / FILE), compress_to_fp16=False)


def _quantize_static(converted, calibration: Sequence[dict[str, np.ndarray]]):
    """int8 weights and activations, activation ranges from ``calibration`` (one text per item)."""
    import nncf

    if not calibration:
        raise ConfigError("int8 with openvino needs calibration texts (calibration = PATH)")
    return nncf.quantize(
        converted,
        nncf.Dataset(list(calibration)),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
    )


def openvino_runner(folder: Path, precision: str | None = "f32", threads: int | None = None):
    """A function ``{name: (batch, seq) int64} -> (batch, seq, hidden) float32`` over the export, and
    the inference precision it runs at (``f32`` or ``bf16``).

    Args:
        precision: ``f32`` or ``bf16``, OpenVINO's inference precision of what is not int8; None takes
            the CPU's best (bf16 where it has it).

    Raises:
        ConfigError: ``bf16`` asked on a CPU that has none (OpenVINO would silently run f32).
    """
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(str(folder / FILE), "CPU", config)
    got = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    if precision is not None and got != precision:
        raise ConfigError(f"OpenVINO runs {got} here, not {precision}: this CPU has no {precision} support")
    request = compiled.create_infer_request()

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(request.infer(feeds)[0], dtype=np.float32)  # a copy: the request reuses its buffer

    return run, got
