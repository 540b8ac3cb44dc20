"""Calibration texts for static int8: a fixed, seeded sample of questions and sentences.

A source is a folder of SQuAD-format JSON files (LAReQA's ``{lang}.json``: questions become queries,
``sentences`` passages) or a UTF-8 text file with one text per line (used as given: include a prefix if
the model wants one). Calibration only sets activation ranges, but the texts must still come from
outside the evaluated benchmark: calibrate an XQuAD-R evaluation on MLQA-R (other Wikipedia articles,
no shared text) and an MLQA-R evaluation on XQuAD-R.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from hybrid_qdrant.errors import ConfigError

DEFAULT_SIZE = 300
SEED = 0


@dataclass(frozen=True)
class CalibrationTexts:
    """Texts to calibrate on, prefixes applied, and a digest that names them in cache keys."""

    texts: tuple[str, ...]
    source: str

    @property
    def digest(self) -> str:
        joined = "\n".join(self.texts).encode("utf-8")
        return hashlib.sha256(joined).hexdigest()[:16]


def load_calibration(
    source: str | Path, query_prefix: str, passage_prefix: str, size: int = DEFAULT_SIZE
) -> CalibrationTexts:
    """``size`` texts from ``source``: half questions, half passages, spread evenly over its files.

    Raises:
        ConfigError: the source is missing, unreadable, or holds no text.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ConfigError(f"calibration folder {path} holds no SQuAD-format *.json file")
        per_file = max(1, size // (2 * len(files)))
        rng = random.Random(SEED)
        texts: list[str] = []
        for file in files:
            questions, sentences = _squad_texts(file)
            texts += [query_prefix + t for t in _sample(rng, questions, per_file)]
            texts += [passage_prefix + t for t in _sample(rng, sentences, per_file)]
    elif path.is_file():
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read calibration file {path}: {exc}") from exc
        texts = _sample(random.Random(SEED), [line for line in lines if line], size)
    else:
        raise ConfigError(f"calibration source does not exist: {path}")
    if not texts:
        raise ConfigError(f"calibration source {path} holds no text")
    return CalibrationTexts(tuple(texts), str(path))


def _squad_texts(file: Path) -> tuple[list[str], list[str]]:
    """The questions and the sentences (or whole contexts) of a SQuAD-format file, in file order."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        questions, sentences = [], []
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                sentences += paragraph.get("sentences") or [paragraph["context"]]
                questions += [qa["question"] for qa in paragraph.get("qas", [])]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"calibration file {file} is not SQuAD-format JSON: {exc}") from exc
    return [q for q in questions if q.strip()], [s for s in sentences if s.strip()]


def _sample(rng: random.Random, items: list[str], k: int) -> list[str]:
    return rng.sample(items, k) if len(items) > k else list(items)
