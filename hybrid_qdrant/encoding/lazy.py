"""An encoder that loads its model only when something has to be encoded.

A run whose passages are all in the collection and whose questions are all in the embedding cache
encodes nothing, yet it needs the encoder's fingerprint (the cache key, the collection check) and its
dimension. Both are what the model said the first time it was loaded with these settings: recorded then
under ``{cache dir}/_encoders/``, keyed by the settings and the model's file identity (the same
name + size + mtime identity the fingerprint itself is built from), and read back on later runs, so a
cached run imports neither torch nor sentence-transformers. A model whose files changed has another
key (it is loaded and recorded again); if a loaded model disagrees with a record anyway (files changed
with their size and mtime kept), the record is dropped and the run stops with a one-line error rather
than encoding with a fingerprint that is not the model's.

Only the torch backend is recorded: an ONNX Runtime / OpenVINO export's fingerprint carries the
precision the CPU runs (and calibration texts), which is decided when it loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from hybrid_qdrant.atomic_write import atomic_write_bytes
from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder, model_identity
from hybrid_qdrant.errors import ModelError

logger = logging.getLogger(__name__)

#: Folder (inside the embedding cache directory) of the recorded encoder shapes.
RECORDS = "_encoders"
RECORD_VERSION = 1


#: Settings that change how a model runs, not its vectors: not part of a record's key.
_HOW_RUN = ("batch_size", "device", "workers")


def record_key(settings: EncoderSettings) -> str | None:
    """The key of ``settings``' record: every setting that changes the vectors plus the model's (and
    adapter's) file identity; None when the encoder is not recorded (non-torch backends)."""
    if settings.backend != "torch":
        return None
    key = {
        "version": RECORD_VERSION,
        "settings": {k: v for k, v in asdict(settings).items() if k not in _HOW_RUN},
        "model": model_identity(settings.model),
        "adapter": model_identity(settings.adapter) if settings.adapter else None,
    }
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:24]


class LazyEncoder:
    """``SentenceTransformerEncoder(settings)`` with its fingerprint and dimension known up front (from
    a record) and its model loaded on the first ``encode_*`` call (thread-safe)."""

    def __init__(
        self, settings: EncoderSettings, fingerprint: str, dim: int, max_seq_length: int | None, record: Path
    ):
        self.settings = settings
        self.fingerprint = fingerprint
        self.dim = dim
        self.max_seq_length = max_seq_length
        self._record = record
        self._loaded: SentenceTransformerEncoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> SentenceTransformerEncoder:
        """The real encoder (loaded once); ModelError when it is not the recorded one."""
        with self._lock:
            if self._loaded is None:
                encoder = SentenceTransformerEncoder(self.settings)
                if (encoder.fingerprint, encoder.dim) != (self.fingerprint, self.dim):
                    self._record.unlink(missing_ok=True)
                    raise ModelError(
                        f"model {self.settings.model} changed since it was last loaded (its files kept their "
                        "sizes and times); its record is dropped: run again"
                    )
                self._loaded = encoder
        return self._loaded

    @property
    def model(self):
        return self.load().model

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.load().encode_queries(texts)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.load().encode_passages(texts)


def recorded_encoder(settings: EncoderSettings, cache_dir: str | Path):
    """A ``LazyEncoder`` when ``settings`` were recorded under ``cache_dir``; otherwise the model is
    loaded now (``SentenceTransformerEncoder``) and, for the torch backend, recorded for the next run."""
    key = record_key(settings)
    if key is None:
        return SentenceTransformerEncoder(settings)
    path = Path(cache_dir) / RECORDS / f"{key}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LazyEncoder(settings, data["fingerprint"], int(data["dim"]), data.get("max_seq_length"), path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring the unreadable encoder record %s (%s)", path, exc)
    encoder = SentenceTransformerEncoder(settings)
    record = {
        "fingerprint": encoder.fingerprint,
        "dim": encoder.dim,
        "max_seq_length": encoder.max_seq_length,
        "model": settings.model,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    except OSError as exc:  # a read-only cache only costs the next run a model load
        logger.warning("could not record the encoder in %s (%s)", path, exc)
    return encoder


__all__ = ["RECORDS", "LazyEncoder", "record_key", "recorded_encoder"]
