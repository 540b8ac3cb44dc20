"""What a collection records about its encoder so that it can be searched knowing only the collection.

The fingerprint (``Encoder.fingerprint``) identifies the embeddings; the *source* says how to load the
encoder again: the model reference (a hub id as given, or the absolute path of a local directory), the
adapter, the prefixes or prompt names, the max sequence length and the normalisation. Ingestion records
both when it creates a collection (``CollectionSpec.source``); ``load_encoder`` rebuilds the encoder
from the source and refuses it unless its fingerprint is the recorded one (a moved or changed local
model, another model given explicitly).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder, looks_local
from hybrid_qdrant.errors import ModelError
from hybrid_qdrant.store.compat import describe_difference, fingerprint_matches

#: The only kind of encoder hq builds today.
SENTENCE_TRANSFORMERS = "sentence-transformers"


@dataclass(frozen=True)
class EncoderSource:
    """How to load a collection's encoder again.

    Attributes:
        model: hub id as given, or the absolute path of a local model directory.
        adapter: absolute path of a LoRA adapter directory, or None.
        query_prefix / passage_prefix: strings prepended to texts.
        query_prompt_name / passage_prompt_name: prompts of the model used instead, or None.
        max_seq_length: truncation length the passages were encoded with.
        normalize: vectors are L2-normalised (always, for hq's encoders).
        kind: ``sentence-transformers``.
        backend / quantize / calibration: how the model ran (``torch`` / ``none`` unless an ONNX
            Runtime or OpenVINO export was used; calibration: the absolute path of openvino int8's texts).
    """

    model: str
    adapter: str | None = None
    query_prefix: str = ""
    passage_prefix: str = ""
    query_prompt_name: str | None = None
    passage_prompt_name: str | None = None
    max_seq_length: int | None = None
    normalize: bool = True
    kind: str = SENTENCE_TRANSFORMERS
    backend: str = "torch"
    quantize: str = "none"
    calibration: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> EncoderSource:
        """Parse a recorded source (keys this version does not know are ignored); ModelError if malformed."""
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError, AttributeError) as exc:
            raise ModelError(f"the recorded encoder source is malformed ({type(exc).__name__})") from None

    def settings(
        self,
        model: str | None = None,
        adapter: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
    ) -> EncoderSettings:
        """Encoder settings from this source; ``model`` / ``adapter`` replace the recorded ones."""
        return EncoderSettings(
            model=model or self.model,
            query_prefix=self.query_prefix,
            passage_prefix=self.passage_prefix,
            query_prompt_name=self.query_prompt_name,
            passage_prompt_name=self.passage_prompt_name,
            batch_size=batch_size,
            device=device,
            max_seq_length=self.max_seq_length,
            adapter=adapter or self.adapter,
            backend=self.backend,
            quantize=self.quantize,
            calibration=self.calibration,
        )


def model_reference(model: str) -> str:
    """A hub id as given; a local directory as its absolute path (so that it can be found again)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def source_of(encoder: Any) -> EncoderSource | None:
    """The source of an encoder built by hq (a ``CachedEncoder`` is unwrapped); None for other encoders."""
    inner = getattr(encoder, "encoder", encoder)  # CachedEncoder wraps the model encoder
    settings = getattr(inner, "settings", None)
    if not isinstance(settings, EncoderSettings):
        return None
    return EncoderSource(
        model=model_reference(settings.model),
        adapter=model_reference(settings.adapter) if settings.adapter else None,
        query_prefix=settings.query_prefix,
        passage_prefix=settings.passage_prefix,
        query_prompt_name=settings.query_prompt_name,
        passage_prompt_name=settings.passage_prompt_name,
        max_seq_length=getattr(inner, "max_seq_length", None) or settings.max_seq_length,
        backend=settings.backend,
        quantize=settings.quantize,
        calibration=model_reference(settings.calibration) if settings.calibration else None,
    )


def source_json(encoder: Any) -> str:
    """``source_of(encoder)`` as the JSON text a ``CollectionSpec`` records (``""`` when unknown)."""
    source = source_of(encoder)
    return source.to_json() if source else ""


def load_encoder(
    collection: str,
    fingerprint: str,
    source: str,
    *,
    model: str | None = None,
    adapter: str | None = None,
    settings: EncoderSettings | None = None,
    device: str | None = None,
    batch_size: int = 64,
):
    """The encoder a collection was built with, checked against its recorded fingerprint.

    Args:
        collection: the collection's name (for messages).
        fingerprint: the recorded fingerprint (full, or the tag old servers keep in payloads).
        source: the recorded source (JSON), or ``""``.
        model / adapter: load this model (adapter) instead of the recorded one; with the recorded
            prefixes and length, or with ``settings`` when the collection records no source.
        settings: how to run ``model`` when the collection records no source (prefixes etc.).
        device / batch_size: where and how many texts per forward pass.

    Raises:
        ModelError: no source and no model; the recorded model is gone; the model's fingerprint is not
            the recorded one. One line each, saying to pass ``--model``.
    """
    if source:
        recorded = EncoderSource.from_json(source)
        if recorded.kind != SENTENCE_TRANSFORMERS:
            raise ModelError(
                f"collection '{collection}' was built with a {recorded.kind} encoder; pass --model"
            )
        if model is None and looks_local(recorded.model) and not Path(recorded.model).exists():
            raise ModelError(
                f"collection '{collection}' was built with the model at {recorded.model}, which no longer "
                "exists; pass --model PATH (the same model, wherever it is now)"
            )
        wanted = recorded.settings(model, adapter, device, batch_size)
    elif model is not None:
        wanted = replace(
            settings or EncoderSettings(model=model),
            model=model,
            device=device,
            batch_size=batch_size,
            **({"adapter": adapter} if adapter else {}),
        )
    else:
        raise ModelError(
            f"collection '{collection}' records no encoder to load (built before hq recorded it, or on a "
            "server without collection metadata); pass --model (and its prefixes)"
        )
    encoder = SentenceTransformerEncoder(wanted)
    if fingerprint and not fingerprint_matches(fingerprint, encoder.fingerprint):
        given = f"model {model}" if model else f"the recorded model {wanted.model}"
        hint = "pass --model with the model it was built with" if model else "it changed since; pass --model"
        raise ModelError(
            f"{given} does not match the encoder collection '{collection}' was built with "
            f"({describe_difference(fingerprint, encoder.fingerprint)}); {hint}"
        )
    return encoder
