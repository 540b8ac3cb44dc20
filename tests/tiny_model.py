"""A tiny sentence-transformers model built offline, for tests (no hub access).

``build_tiny_st_model(path, texts)`` trains a WordPiece vocabulary on ``texts`` (plus the ``query:`` /
``passage:`` prefixes), initialises a 2-layer BERT with hidden size 32 from a fixed seed, and saves
Transformer + mean Pooling + Normalize as a sentence-transformers directory. Encoding is deterministic;
the vectors are meaningless until trained.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_st_model(
    path: str | Path,
    texts: Iterable[str],
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_seq_length: int = 64,
    seed: int = 0,
    prompts: dict[str, str] | None = None,
) -> str:
    """Build and save the tiny model in ``path``; return ``str(path)``.

    Args:
        path: the output directory (created).
        texts: texts the vocabulary is trained on; words outside them become ``[UNK]`` pieces.
        hidden / layers / heads: BERT size.
        max_seq_length: the model's truncation length.
        seed: weight initialisation seed.
        prompts: prompts saved with the model (e.g. ``{"query": "query: "}``); none by default.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path = Path(path)
    raw = path / "_hf"
    raw.mkdir(parents=True, exist_ok=True)

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    vocabulary = trainers.WordPieceTrainer(vocab_size=2000, min_frequency=1, special_tokens=SPECIAL_TOKENS)
    tokenizer.train_from_iterator([*texts, "query: passage:"], vocabulary)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_seq_length,
    )
    fast.save_pretrained(raw)

    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=max(128, max_seq_length),
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(raw)

    transformer = Transformer(str(raw), max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu", prompts=prompts)
    model.save(str(path))
    shutil.rmtree(raw)
    return str(path)
