"""Encoders: the protocol every model meets, and the sentence-transformers implementation."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hybrid_qdrant.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
DEFAULT_QUERY_PREFIX = "query: "
DEFAULT_PASSAGE_PREFIX = "passage: "
#: Seconds the one reachability check of the Hugging Face hub may take before a hub id counts as offline.
HUB_CHECK_SECONDS = 3.0
#: What to do when a hub id cannot be fetched (the end of the one-line error).
LOCAL_MODEL_HINT = (
    "download it where the hub is reachable and pass --model PATH (a sentence-transformers folder)"
)
#: Folder names that say nothing about the model: :func:`model_label` names them by their parent.
GENERIC_FOLDERS = frozenset({"final", "model", "best", "latest", "output", "merged"})
_CHECKPOINT = re.compile(r"checkpoint-\d+")
_SNAPSHOT = re.compile(r"[0-9a-f]{40}")


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
        workers: encoding processes (``hybrid_qdrant.encoding.pool``): one per GPU, or CPU processes.
        max_seq_length: truncation length; None keeps the model's.
        adapter: optional path of a LoRA adapter (peft) loaded on top of the model.
        backend: ``torch``, ``onnx`` or ``openvino`` (CPU; see ``hybrid_qdrant.backends``).
        quantize: ``none``, ``bf16`` (openvino) or ``int8`` (onnx: dynamic; openvino: static, calibrated).
        calibration: texts for openvino int8 (a SQuAD-format folder or a text file), from outside the
            evaluated benchmark.
    """

    model: str = DEFAULT_MODEL
    query_prefix: str = DEFAULT_QUERY_PREFIX
    passage_prefix: str = DEFAULT_PASSAGE_PREFIX
    query_prompt_name: str | None = None
    passage_prompt_name: str | None = None
    batch_size: int = 64
    device: str | None = None
    workers: int = 1
    max_seq_length: int | None = None
    adapter: str | None = None
    backend: str = "torch"
    quantize: str = "none"
    calibration: str | None = None

    def __post_init__(self) -> None:
        from hybrid_qdrant.backends import check_backend

        if not self.model:
            raise ConfigError("[encoder] model is empty")
        for key in ("batch_size", "workers", "max_seq_length"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        check_backend(self.backend, self.quantize, self.device, self.calibration)


def model_identity(model: str) -> str:
    """A stable identity for a model: the hub id, or the folder's name with a hash of its weight and
    config files' names, sizes and modification times (no file is read)."""
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
        self.calibration = None
        self.backend = "torch/none"  # what runs (the effective precision included), in the fingerprint
        if settings.backend != "torch":
            self.backend = self._use_backend()
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            dim = int(self.model.encode(["x"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)
        self.fingerprint = self._fingerprint()

    def _use_backend(self) -> str:
        """Swap the transformer for its ONNX Runtime / OpenVINO export (made once, cached)."""
        from hybrid_qdrant.backends import use_backend
        from hybrid_qdrant.backends.calibration import load_calibration

        s = self.settings
        if s.backend == "openvino" and s.quantize == "int8" and s.calibration:  # static int8 only
            prompts = getattr(self.model, "prompts", {}) or {}
            query = prompts.get(s.query_prompt_name, "") if s.query_prompt_name else s.query_prefix
            passage = prompts.get(s.passage_prompt_name, "") if s.passage_prompt_name else s.passage_prefix
            self.calibration = load_calibration(s.calibration, query, passage)
        identity = {
            "model": model_identity(s.model),
            "adapter": model_identity(s.adapter) if s.adapter else None,
        }
        return use_backend(self.model, s.backend, s.quantize, identity, self.calibration)

    def _fingerprint(self) -> str:
        s = self.settings
        parts = {
            "model": model_identity(s.model),
            "adapter": model_identity(s.adapter) if s.adapter else None,
            "query": s.query_prompt_name or s.query_prefix,
            "passage": s.passage_prompt_name or s.passage_prefix,
            "prompts": bool(s.query_prompt_name or s.passage_prompt_name),
            "max_seq_length": self.model.max_seq_length,
        }
        if self.backend != "torch/none":  # torch fp32 keeps the fingerprint it always had
            parts["backend"] = self.backend
            if self.calibration is not None:
                parts["calibration"] = self.calibration.digest
        return json.dumps(parts, sort_keys=True, ensure_ascii=False)

    @property
    def max_seq_length(self) -> int | None:
        """The truncation length the model encodes with."""
        return self.model.max_seq_length

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
    """A model name that names a directory rather than a hub id (``./x``, ``/x``, ``~/x``, ``a/b/c``, or a
    folder that exists)."""
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists() or model.count("/") > 1


def model_label(model: str) -> str:
    """A short, meaningful name for a model (hub id or folder), e.g. for default collection names.

    ``intfloat/multilingual-e5-small`` -> ``multilingual-e5-small``; a folder -> its name, except names
    that say nothing: ``runs/x/final`` -> ``x`` (the run), ``runs/x/checkpoint-50`` -> ``x-checkpoint-50``,
    a Hugging Face cache snapshot ``.../models--org--name/snapshots/<hash>`` -> ``name``.
    """
    text = model.rstrip("/\\") or model
    if not looks_local(model):
        return text.rsplit("/", 1)[-1]
    path = Path(os.path.abspath(Path(text).expanduser()))  # "." and "final/.." named, links kept as written
    parent = path.parent
    if (
        _SNAPSHOT.fullmatch(path.name)
        and parent.name == "snapshots"
        and parent.parent.name.startswith("models--")
    ):
        return parent.parent.name.split("--")[-1]
    if path.name.lower() in GENERIC_FOLDERS and parent.name:
        return parent.name
    if _CHECKPOINT.fullmatch(path.name) and parent.name:
        return f"{parent.name}-{path.name}"
    return path.name or text


def hub_unreachable(timeout: float = HUB_CHECK_SECONDS) -> str | None:
    """Why the Hugging Face hub cannot be used now, or None when it answers.

    ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set, or one request to the endpoint (``HF_ENDPOINT``,
    proxies honoured) that fails or takes longer than ``timeout`` seconds: one attempt, no retries.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    if constants.HF_HUB_OFFLINE or any(
        (v or "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in flags
    ):
        return "HF_HUB_OFFLINE is set"
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)  # any HTTP answer will do
    except Exception as exc:  # DNS, refused, timeout, TLS, offline mode: the hub is of no use
        return f"the hub ({constants.ENDPOINT}) is unreachable ({type(exc).__name__}; offline?)"
    return None


def in_hub_cache(model: str) -> bool:
    """Whether the local Hugging Face cache holds a copy of the hub model (its config)."""
    from huggingface_hub import try_to_load_from_cache

    cache = os.environ.get("SENTENCE_TRANSFORMERS_HOME")  # sentence-transformers' own cache, when set
    return any(
        isinstance(try_to_load_from_cache(model, name, cache_dir=cache), str)
        for name in ("modules.json", "config.json")
    )


def use_hub_cache_only(model: str) -> bool:
    """Whether a hub id must load from the local cache: True when the hub cannot be reached (one short
    check instead of minutes of retries) and the cache holds the model, False when the hub answers.

    Raises:
        ModelError: the hub cannot be reached and the model is not in the local cache.
    """
    reason = hub_unreachable()
    if reason is None:
        return False
    if not in_hub_cache(model):
        raise ModelError(
            f"model {model!r} is not in the local Hugging Face cache and {reason}; {LOCAL_MODEL_HINT}"
        )
    logger.info("%s: loading %s from the local Hugging Face cache", reason, model)
    return True


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """huggingface_hub's offline mode for this process while inside: every file from the cache, no request.

    ``local_files_only`` alone does not reach every lookup (transformers still asks the hub for an
    ``adapter_config.json``, with five retries), so the library's own switch is flipped, then restored.
    """
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def route_hub_logging() -> None:
    """Print each huggingface_hub warning once.

    huggingface_hub gives its logger a stderr handler of its own and lets records propagate too, so under an
    application that configured logging (``hq``) every warning printed twice. When the root logger has a
    handler, the library's default handler is dropped and records go through the application's (its
    format, its secret scrubbing).
    """
    if not logging.getLogger().handlers:
        return
    hub = logging.getLogger("huggingface_hub")
    for handler in list(hub.handlers):
        default = type(handler) is logging.StreamHandler and handler.formatter is None
        if default and handler.stream in (sys.stderr, sys.__stderr__):
            hub.removeHandler(handler)


def load_sentence_transformer(model: str, device: str | None = None, adapter: str | None = None):
    """Load a sentence-transformers model from the hub or a local directory, with an optional adapter.

    A hub id is fetched only when one short request reaches the hub; otherwise it loads from the local
    cache or fails at once (:func:`use_hub_cache_only`).

    Raises:
        ModelError: the path does not exist, or the hub id cannot be loaded (with the fix when offline).
    """
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    if not logger.isEnabledFor(logging.INFO):
        hf_logging.disable_progress_bar()  # keep stderr to one line on errors; -v shows them
    route_hub_logging()

    local = looks_local(model)
    if local and not Path(model).expanduser().exists():
        raise ModelError(f"model path does not exist: {model}")
    cache_only = not local and use_hub_cache_only(model)
    try:
        with hub_offline() if cache_only else contextlib.nullcontext():
            st = SentenceTransformer(
                str(Path(model).expanduser()) if local else model, device=device, local_files_only=cache_only
            )
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
