"""Encoders: the protocol every model meets, the sentence-transformers implementation, the embedding cache.

- ``encoder``: ``Encoder`` (the protocol), ``EncoderSettings`` (the ``[encoder]`` section of a job),
  ``SentenceTransformerEncoder``, ``load_sentence_transformer``;
- ``cache``: ``EmbeddingCache`` and ``CachedEncoder`` (every text encoded once per model).
"""
