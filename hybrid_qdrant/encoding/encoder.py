"""Encoders: the protocol every model meets, and the sentence-transformers implementation."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hybrid_qdrant.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
DEFAULT_QUERY_PREFIX = "query: "
DEFAULT_PASSAGE_PREFIX = "passage: "


@runtime_checkable
class Encoder(Protocol):
    """Maps texts to L2-normalised float32 arrays of shape (n, dim).

    ``fingerprint`` identifies the model and every setting that changes the vectors (prefixes,
    pooling, max length); equal fingerprints mean interchangeable embeddings.
    """

    dim: int
    fingerprint: str

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode queries (the query prefix or prompt applied)."""
        ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Encode passages (the passage prefix or prompt applied)."""
        ...


@dataclass(frozen=True)
class EncoderSettings:
    """How a sentence-transformers model is run (a job's ``[encoder]`` section).

    Attributes:
        model: hub id or local directory.
        query_prefix / passage_prefix: strings prepended to texts (``query: `` / ``passage: ``).
        query_prompt_name / passage_prompt_name: names of prompts stored in the model's config, used
            instead of the prefixes when given.
        batch_size: texts per forward pass.
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``; None picks the best available.
        max_seq_length: truncation length; None keeps the model's.
        adapter: optional path of a LoRA adapter (peft) loaded on top of the model.
    """

    model: str = DEFAULT_MODEL
    query_prefix: str = DEFAULT_QUERY_PREFIX
    passage_prefix: str = DEFAULT_PASSAGE_PREFIX
    query_prompt_name: str | None = None
    passage_prompt_name: str | None = None
    batch_size: int = 64
    device: str | None = None
    max_seq_length: int | None = None
    adapter: str | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("[encoder] model is empty")
        for key in ("batch_size", "max_seq_length"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def _model_identity(model: str) -> str:
    """A stable identity for a model: the hub id, or a hash of a local directory's weights and config."""
    path = Path(model)
    if not path.exists():
        return model
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if file.is_file() and file.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"}:
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return f"{path.resolve().name}@{digest.hexdigest()[:16]}"


class SentenceTransformerEncoder:
    """Any sentence-transformers model (hub id or local path) with query/passage prefixes or prompts."""

    def __init__(self, settings: EncoderSettings | None = None, **overrides) -> None:
        settings = settings or EncoderSettings()
        if overrides:
            settings = EncoderSettings(**{**settings.__dict__, **overrides})
        self.settings = settings
        self.model = load_sentence_transformer(settings.model, settings.device, settings.adapter)
        if settings.max_seq_length is not None:
            self.model.max_seq_length = settings.max_seq_length
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            dim = int(self.model.encode(["x"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)
        self.fingerprint = self._fingerprint()

    def _fingerprint(self) -> str:
        s = self.settings
        parts = {
            "model": _model_identity(s.model),
            "adapter": _model_identity(s.adapter) if s.adapter else None,
            "query": s.query_prompt_name or s.query_prefix,
            "passage": s.passage_prompt_name or s.passage_prefix,
            "prompts": bool(s.query_prompt_name or s.passage_prompt_name),
            "max_seq_length": self.model.max_seq_length,
        }
        return json.dumps(parts, sort_keys=True, ensure_ascii=False)

    def _encode(self, texts: Sequence[str], prefix: str, prompt_name: str | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        kwargs = {"prompt_name": prompt_name} if prompt_name else {"prompt": prefix or None}
        emb = self.model.encode(
            list(texts),
            batch_size=self.settings.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
            **kwargs,
        )
        return np.ascontiguousarray(emb, dtype=np.float32)  # (n, dim)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.settings.query_prefix, self.settings.query_prompt_name)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.settings.passage_prefix, self.settings.passage_prompt_name)


def looks_local(model: str) -> bool:
    """A model name that names a directory rather than a hub id (``./x``, ``/x``, ``~/x``, ``a/b/c``, or
    any path that exists)."""
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists() or model.count("/") > 1


def load_sentence_transformer(model: str, device: str | None = None, adapter: str | None = None):
    """Load a sentence-transformers model from the hub or a local directory, with an optional adapter.

    Raises:
        ModelError: the path does not exist, or the hub id cannot be loaded.
    """
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    if not logger.isEnabledFor(logging.INFO):
        hf_logging.disable_progress_bar()  # keep stderr to one line on errors; -v shows them

    local = looks_local(model)
    if local and not Path(model).expanduser().exists():
        raise ModelError(f"model path does not exist: {model}")
    try:
        st = SentenceTransformer(str(Path(model).expanduser()) if local else model, device=device)
    except Exception as exc:  # the hub, a corrupt directory, a missing config: one clear line
        raise ModelError(f"cannot load model {model!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if adapter:
        if not Path(adapter).exists():
            raise ModelError(f"adapter path does not exist: {adapter}")
        try:
            st.load_adapter(adapter)
        except Exception as exc:
            raise ModelError(f"cannot load adapter {adapter!r}: {exc}".splitlines()[0]) from exc
    return st
