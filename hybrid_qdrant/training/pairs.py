"""Training pairs from records: JSONL and Parquet files, and Hugging Face datasets.

Every source yields :class:`~hybrid_qdrant.types.Pair` records (query, passage, lang, group_id,
optional negative). Translations of one logical pair share a ``group_id``; pairs without a group join
monolingual batches only. Bad records raise :class:`~hybrid_qdrant.errors.DataError` naming the file
and the line (or row).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.types import Pair

logger = logging.getLogger(__name__)

#: The fields of a pair record, in the order the trainer feeds them to the loss.
FIELDS = ("query", "passage", "lang", "group_id", "negative")
REQUIRED = ("query", "passage", "lang")


def record_to_pair(record: Mapping[str, Any], where: str, lang: str | None = None) -> Pair:
    """Validate one record and build a Pair.

    Args:
        record: a mapping with ``query``, ``passage``, ``lang`` and optional ``group_id``, ``negative``.
        where: the location used in error messages (``file.jsonl:12``).
        lang: language used when the record has no ``lang`` field.

    Raises:
        DataError: a missing field, an empty text, or a value of the wrong type.
    """
    if not isinstance(record, Mapping):
        fields = ", ".join(REQUIRED)
        raise DataError(f"{where}: expected an object with fields {fields}, got {type(record).__name__}")
    values: dict[str, Any] = {}
    for name in REQUIRED:
        value = record.get(name)
        if value is None and name == "lang":
            value = lang
        if value is None:
            raise DataError(f"{where}: missing field {name!r}")
        if not isinstance(value, str):
            raise DataError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise DataError(f"{where}: empty {name!r}")
        values[name] = value
    group = record.get("group_id")
    if group is not None and not isinstance(group, (str, int)):
        raise DataError(f"{where}: field 'group_id' must be a string or integer, got {type(group).__name__}")
    negative = record.get("negative")
    if negative is not None:
        if not isinstance(negative, str):
            raise DataError(f"{where}: field 'negative' must be a string, got {type(negative).__name__}")
        if not negative.strip():
            raise DataError(f"{where}: empty 'negative'")
    return Pair(
        query=values["query"],
        passage=values["passage"],
        lang=values["lang"],
        group_id=None if group is None or group == "" else str(group),
        negative=negative,
    )


def read_jsonl(path: str | Path, lang: str | None = None) -> list[Pair]:
    """Read pairs from a JSON Lines file (one object per line; blank lines are skipped)."""
    path = Path(path)
    pairs = []
    with open_text(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: malformed JSON: {exc.msg} (column {exc.colno})") from exc
            pairs.append(record_to_pair(record, f"{path}:{number}", lang))
    return pairs


def read_parquet(path: str | Path, lang: str | None = None) -> list[Pair]:
    """Read pairs from a Parquet file; rows are numbered from 1 in error messages."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file does not exist: {path}")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read Parquet: {exc}".splitlines()[0]) from exc
    columns = [c for c in FIELDS if c in table.column_names]
    rows = table.select(columns).to_pylist()
    return [record_to_pair(row, f"{path}: row {number}", lang) for number, row in enumerate(rows, start=1)]


def read_hf(
    name: str,
    split: str = "train",
    config_name: str | None = None,
    columns: Mapping[str, str] | None = None,
    lang: str | None = None,
) -> list[Pair]:
    """Read pairs from a Hugging Face dataset: a hub id, a data folder, or a ``save_to_disk`` folder.

    Args:
        name: hub id (``org/name``) or local path.
        split: the split to read.
        config_name: the dataset configuration (subset), if any.
        columns: maps pair fields to dataset columns, e.g. ``{"query": "question", "lang": "language"}``;
            unmapped fields use their own name.
        lang: language of every row when the dataset has no language column.
    """
    import datasets

    columns = dict(columns or {})
    unknown = set(columns) - set(FIELDS)
    if unknown:
        raise DataError(f"{name}: unknown pair field(s) in columns: {sorted(unknown)}; fields: {FIELDS}")
    path = Path(name).expanduser()
    try:
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            dataset = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            dataset = datasets.load_dataset(str(path) if path.exists() else name, config_name, split=split)
    except Exception as exc:  # the hub, a missing split, a bad folder: one clear line
        message = f"cannot load dataset {name!r} (split {split!r}): {type(exc).__name__}: {exc}"
        raise DataError(message.splitlines()[0]) from exc
    mapping = {field: columns.get(field, field) for field in FIELDS}
    missing = [
        mapping[f] for f in REQUIRED if mapping[f] not in dataset.column_names and not (f == "lang" and lang)
    ]
    if missing:
        raise DataError(f"{name}[{split}]: missing column(s) {missing}; columns: {dataset.column_names}")
    present = {field: column for field, column in mapping.items() if column in dataset.column_names}
    dataset = dataset.select_columns(list(dict.fromkeys(present.values())))
    pairs = []
    for number, row in enumerate(dataset, start=1):
        record = {field: row[column] for field, column in present.items()}
        pairs.append(record_to_pair(record, f"{name}[{split}] row {number}", lang))
    return pairs


def read_records(path: str | Path, lang: str | None = None) -> list[Pair]:
    """Read a JSONL (``.jsonl``, ``.jsonl.gz``) or Parquet file, chosen by its suffix."""
    path = Path(path)
    if path.name.endswith((".parquet", ".pq")):
        return read_parquet(path, lang)
    if path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return read_jsonl(path, lang)
    raise DataError(f"{path}: unknown file type; expected .jsonl, .jsonl.gz or .parquet")


def summarize(pairs: Iterable[Pair]) -> dict[str, int]:
    """Count pairs per language (sorted by language)."""
    counts: dict[str, int] = {}
    for pair in pairs:
        counts[pair.lang] = counts.get(pair.lang, 0) + 1
    return dict(sorted(counts.items()))


@contextmanager
def open_text(path: Path) -> Iterator[Iterator[str]]:
    """Open a UTF-8 text file for reading, gunzipping ``.gz``; a missing file is a DataError."""
    if not path.is_file():
        raise DataError(f"data file does not exist: {path}")
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    handle = opener(path, "rt", encoding="utf-8")  # noqa: SIM115 - closed in the finally below
    try:
        yield handle
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    finally:
        handle.close()
