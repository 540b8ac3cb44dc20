"""Benchmark loaders: LAReQA (XQuAD-R, MLQA-R), BEIR-format folders with ``lang``, and MIRACL."""
