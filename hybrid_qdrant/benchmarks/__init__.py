"""Benchmark loaders: LAReQA (XQuAD-R, MLQA-R) and BEIR-format folders with ``lang``."""
