"""The stand-in for the Hugging Face model inside sentence-transformers' Transformer module.

sentence-transformers tokenizes, calls ``Transformer.model(**features)`` and reads its
``last_hidden_state`` as the token embeddings; pooling, normalisation and prompts follow in its own
modules. ``ExportedModel`` answers that call with an ONNX Runtime or OpenVINO session, so everything
around the transformer stays sentence-transformers' own. ``TokenEmbeddings`` is what gets exported: the
model's forward from token ids to ``last_hidden_state``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

#: The inputs an exported encoder may take, in this order (``token_type_ids`` only if the tokenizer
#: produces it).
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "token_embeddings"


class TokenEmbeddings(torch.nn.Module):
    """A Hugging Face encoder as ``(input_ids, attention_mask[, token_type_ids]) -> last_hidden_state``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.model(**kwargs, return_dict=True).last_hidden_state  # (batch, seq, hidden)


class ExportedModel(torch.nn.Module):
    """Runs the token-embedding forward on another runtime; called like the model it replaces.

    Args:
        run: maps ``{input name: (batch, seq) int64 array}`` to the (batch, seq, hidden) float32 output.
        config: the replaced model's config (sentence-transformers reads sizes and flags from it).
        input_names: the inputs the export takes (a prefix of ``INPUT_NAMES``).
        description: what runs it, for ``repr``.
        folder: the export it runs.
    """

    def __init__(
        self,
        run: Callable[[dict[str, np.ndarray]], np.ndarray],
        config,
        input_names: Sequence[str],
        description: str,
        folder: Path | None = None,
    ) -> None:
        super().__init__()
        self._run = run
        self.folder = folder
        self.config = config
        self.input_names = tuple(input_names)
        self.description = description
        self._lock = threading.Lock()  # an inference request serves one call at a time

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_: object) -> dict:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feeds = {}
        for name in self.input_names:
            value = given[name]
            if value is None:
                value = (
                    torch.ones_like(input_ids) if name == "attention_mask" else torch.zeros_like(input_ids)
                )
            feeds[name] = np.ascontiguousarray(value.detach().cpu().numpy(), dtype=np.int64)  # (batch, seq)
        with self._lock:
            out = self._run(feeds)  # (batch, seq, hidden)
        return {"last_hidden_state": torch.from_numpy(np.asarray(out, dtype=np.float32))}

    def extra_repr(self) -> str:
        return self.description
