"""A keyword one-hot encoder for exact tests: each keyword has an axis, translations share it."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: keyword -> axis; the English and German word of a concept share one axis.
LEXICON = {
    "cat": 0,
    "katze": 0,
    "dog": 1,
    "hund": 1,
    "bird": 2,
    "vogel": 2,
    "run": 3,
    "runs": 3,
    "rennt": 3,
    "sits": 4,
    "sitzt": 4,
    "flies": 5,
    "fliegt": 5,
}
DIM = 8  # two spare axes: a text with no keyword maps to the last one


class KeywordEncoder:
    """Maps a text to the normalised sum of the one-hot axes of its keywords (prefixes play no part)."""

    dim = DIM
    fingerprint = '{"model": "keyword-mock"}'

    def __init__(self) -> None:
        self.calls = 0
        self.encoded = 0

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.encoded += len(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                if word in LEXICON:
                    out[i, LEXICON[word]] += 1.0
            if not out[i].any():
                out[i, DIM - 1] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)
