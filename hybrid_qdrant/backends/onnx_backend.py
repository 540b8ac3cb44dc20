"""ONNX Runtime: the transformer exported with ``torch.onnx``, int8 by dynamic quantization.

int8 quantizes the weights of every MatMul ahead of time (per output channel, symmetric) and the
activations per batch at run time (onnxruntime's ``quantize_dynamic``): no calibration data, the
embedding table and layer norms stay fp32. Needs ``pip install hybrid-qdrant[onnx]``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from hybrid_qdrant.backends.exported_model import OUTPUT_NAME, TokenEmbeddings
from hybrid_qdrant.errors import ModelError

logger = logging.getLogger(__name__)

FILE = "model.onnx"
OPSET = 18


def export_onnx(
    model: torch.nn.Module, example: dict[str, torch.Tensor], folder: Path, quantize: str
) -> None:
    """Write ``folder/model.onnx``: ``model`` (a Hugging Face encoder) fp32, or int8 (dynamic)."""
    names = list(example)
    wrapped = TokenEmbeddings(model).eval()
    fp32 = folder / ("model-fp32.onnx" if quantize == "int8" else FILE)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
    try:
        with torch.no_grad():
            torch.onnx.export(
                wrapped,
                tuple(example[name] for name in names),
                str(fp32),
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes={**dynamic, OUTPUT_NAME: {0: "batch", 1: "sequence"}},
                opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter: needs only the onnx package
            )
    except Exception as exc:
        raise ModelError(
            f"cannot export the model to ONNX: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(fp32),
            str(folder / FILE),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )
        fp32.unlink()


def onnx_runner(folder: Path, threads: int | None = None):
    """A function ``{name: (batch, seq) int64} -> (batch, seq, hidden) float32`` over the export."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(folder / FILE), options, providers=["CPUExecutionProvider"])

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([OUTPUT_NAME], feeds)[0]

    return run
