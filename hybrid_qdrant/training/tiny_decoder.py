"""Tiny random decoder embedders, built offline: for tests, CPU demos and sweeps over model size.

``build_tiny_decoder(path, texts, hidden=32)`` trains a byte-level BPE vocabulary on ``texts`` (every
byte is in the alphabet, so no text is out of vocabulary), initialises a Llama-style causal LM (RMSNorm,
rotary positions, SwiGLU, grouped-query attention) from a fixed seed, and saves it as a decoder embedder
(``hybrid_qdrant.training.decoder``: EOS appended, left padding, last-token pooling). The tokenizer puts
a BOS token first and has no pad token, as Mistral's does. The vectors mean nothing until trained.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.training.decoder import DEFAULT_INSTRUCTION, build_decoder_model

__all__ = ["build_tiny_decoder"]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def build_tiny_decoder(
    path: str | Path,
    texts: Iterable[str],
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    vocab_size: int = 512,
    max_seq_length: int = 64,
    pooling: str = "lasttoken",
    seed: int = 0,
    query_instruction: str = DEFAULT_INSTRUCTION,
) -> str:
    """Build and save the tiny decoder embedder in ``path``; return ``str(path)``.

    Args:
        path: output directory (created; an existing one is replaced).
        texts: texts the BPE merges are learned from (the instruction is added).
        hidden / layers / heads / kv_heads: model size; the MLP is 2 x hidden wide.
        vocab_size: BPE vocabulary size cap (the 256 byte symbols and 3 special tokens included).
        max_seq_length: truncation length of the saved embedder.
        pooling: ``lasttoken`` or ``mean``.
        seed: weight initialisation seed.
        query_instruction: saved as the ``query`` prompt (passages: none).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if hidden % heads or heads % kv_heads:
        raise ConfigError(
            f"hidden {hidden} must divide into {heads} heads, and heads into {kv_heads} kv heads"
        )
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    raw = path.parent / f".{path.name}.lm"
    raw.mkdir(parents=True, exist_ok=True)

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    vocabulary = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[UNK, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([*texts, query_instruction], vocabulary)
    bos = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, bos)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=max_seq_length,
    ).save_pretrained(raw)

    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max(128, max_seq_length),
        bos_token_id=bos,
        eos_token_id=tokenizer.token_to_id(EOS),
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(raw)

    model = build_decoder_model(
        str(raw),
        pooling=pooling,
        max_seq_length=max_seq_length,
        prompts={"query": query_instruction, "passage": "", "document": ""},
        device="cpu",
    )
    model.save(str(path))
    shutil.rmtree(raw)
    return str(path)
