"""Decoder-only LMs as embedders: a sentence-transformers model that pools a causal LM's hidden states.

What makes a decoder embed well (E5-Mistral, arXiv 2401.00368; Qwen3-Embedding): the tokenizer appends
the EOS token to every text, so that with ``lasttoken`` pooling the embedding is the hidden state at a
position that has attended to the whole text; batches are padded on the left, so the last position of
every row is a real token (``Pooling`` reads the attention mask either way); the pad token is the EOS
token when the tokenizer has none; queries carry an instruction prompt, passages none. The model is
``Transformer -> Pooling -> Normalize`` and saves as a standard sentence-transformers directory whose
tokenizer keeps the EOS, padding side and pad token, so a reloaded model encodes the same way.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid_qdrant.encoding.encoder import hub_offline, looks_local, use_hub_cache_only
from hybrid_qdrant.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

__all__ = ["DEFAULT_INSTRUCTION", "DTYPES", "build_decoder_model", "prepare_tokenizer", "torch_dtype"]

logger = logging.getLogger(__name__)

#: E5-Mistral's query instruction format; passages get no prompt.
DEFAULT_INSTRUCTION = "Instruct: Given a question, retrieve passages that answer it\nQuery: "
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_PROBE = "x"


def torch_dtype(name: str) -> torch.dtype:
    """``fp32`` / ``bf16`` / ``fp16`` as a torch dtype."""
    import torch

    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r} is not one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[name])


def prepare_tokenizer(tokenizer: Any) -> None:
    """Make a causal LM's tokenizer embedding-ready, in place: EOS appended, left padding, a pad token.

    Idempotent: a tokenizer that already appends EOS keeps its template (BOS included).

    Raises:
        ModelError: the tokenizer has no EOS token, or appending it did not take.
    """
    if tokenizer.eos_token is None:
        raise ModelError("the decoder's tokenizer has no EOS token: last-token pooling needs one")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    tokenizer.init_kwargs["padding_side"] = "left"  # what save_pretrained writes
    ids = tokenizer(_PROBE)["input_ids"]
    if ids[-1] == tokenizer.eos_token_id:
        return
    has_bos = tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
    if hasattr(tokenizer, "add_eos_token"):  # transformers' tokenizers rebuild the template from both flags
        tokenizer.add_bos_token = has_bos
        tokenizer.add_eos_token = True
    else:
        from tokenizers import processors

        bos, eos = f"{tokenizer.bos_token} " if has_bos else "", tokenizer.eos_token
        tokens = [(eos, tokenizer.eos_token_id)]
        if has_bos:
            tokens.append((tokenizer.bos_token, tokenizer.bos_token_id))
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos}$A {eos}", pair=f"{bos}$A {eos} $B:1 {eos}:1", special_tokens=tokens
        )
    ids = tokenizer(_PROBE)["input_ids"]
    if ids[-1] != tokenizer.eos_token_id or (has_bos and ids[0] != tokenizer.bos_token_id):
        raise ModelError(f"could not make the tokenizer append EOS ({tokenizer.eos_token!r}): got ids {ids}")


def _is_sentence_transformer(name: str) -> bool:
    path = Path(name).expanduser()
    if path.is_dir():
        return (path / "modules.json").is_file()
    from sentence_transformers.util import is_sentence_transformer_model

    return is_sentence_transformer_model(name)


def build_decoder_model(
    name: str,
    *,
    pooling: str = "auto",
    max_seq_length: int = 0,
    dtype: str = "fp32",
    prompts: dict[str, str] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
) -> SentenceTransformer:
    """A sentence-transformers embedder over a decoder-only LM (hub id, LM directory or ST directory).

    Args:
        name: a causal LM (its ``lm_head`` is dropped) or a sentence-transformers model of one.
        pooling: ``lasttoken``, ``mean`` or ``cls``; ``auto``: a sentence-transformers model's own
            pooling, else ``lasttoken``.
        max_seq_length: truncation length (the appended EOS is kept); 0 keeps the tokenizer's.
        dtype: ``fp32``, ``bf16`` or ``fp16`` weights.
        prompts: prompts saved with the model, e.g. ``{"query": DEFAULT_INSTRUCTION, "passage": ""}``.
        model_kwargs: further ``from_pretrained`` options (a ``quantization_config`` for QLoRA).
        device: ``cpu``, ``cuda``...; None picks one.

    Raises:
        ModelError: the model or its tokenizer cannot be loaded or made embedding-ready.
        ConfigError: an explicit pooling that differs from a sentence-transformers model's own.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    kwargs = {"dtype": torch_dtype(dtype), **(model_kwargs or {})}
    local = Path(name).expanduser()
    source = str(local) if local.exists() else name
    cache_only = source == name and not looks_local(name) and use_hub_cache_only(name)
    with hub_offline() if cache_only else contextlib.nullcontext():  # unreachable hub: the cache, no retries
        try:
            if _is_sentence_transformer(source):
                model = SentenceTransformer(source, device=device, model_kwargs=kwargs)
                own = next((m.pooling_mode for m in model if isinstance(m, Pooling)), None)
                if pooling not in ("auto", own):
                    raise ConfigError(
                        f"{name} pools by {own!r}, not {pooling!r}: "
                        "set [model] pooling = 'auto' or name the LM itself"
                    )
            else:
                transformer = Transformer(source, model_kwargs=kwargs)
                mode = "lasttoken" if pooling == "auto" else pooling
                pool = Pooling(transformer.get_embedding_dimension(), pooling_mode=mode)
                model = SentenceTransformer(modules=[transformer, pool, Normalize()], device=device)
        except ConfigError:
            raise
        except Exception as exc:  # the hub, a corrupt directory, an unknown architecture: one clear line
            raise ModelError(
                f"cannot load decoder {name!r}: {type(exc).__name__}: {exc}".splitlines()[0]
            ) from exc
    transformer = model[0]
    prepare_tokenizer(transformer.tokenizer)
    transformer.auto_model.config.pad_token_id = transformer.tokenizer.pad_token_id
    if max_seq_length:
        model.max_seq_length = max_seq_length
    if prompts:
        model.prompts = {**model.prompts, **prompts}
    logger.info(
        "decoder embedder %s: %s pooling, left padding, EOS %r appended, %s weights",
        name,
        next(m.pooling_mode for m in model if isinstance(m, Pooling)),
        transformer.tokenizer.eos_token,
        dtype,
    )
    return model
