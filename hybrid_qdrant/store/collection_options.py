"""How a new server collection is built: quantization, HNSW, sharding, on-disk storage."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class CollectionOptions:
    """How a new server collection is built (ignored for existing ones and, mostly, by local mode).

    Attributes:
        quantization: None, ``scalar`` (int8) or ``binary``; originals are kept for rescoring.
        hnsw_m / hnsw_ef_construct: HNSW graph degree and build beam width.
        shard_number / replication_factor: cluster layout.
        on_disk: keep original vectors (and the HNSW graph) on disk, memory-mapped.
        on_disk_payload: keep payloads on disk.
    """

    quantization: str | None = None
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    shard_number: int | None = None
    replication_factor: int | None = None
    on_disk: bool | None = None
    on_disk_payload: bool | None = None

    def __post_init__(self) -> None:
        if self.quantization not in (None, "scalar", "binary"):
            raise ValueError(f"quantization must be 'scalar', 'binary' or None, got {self.quantization!r}")
        for name in ("hnsw_m", "hnsw_ef_construct", "shard_number", "replication_factor"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < (0 if name == "hnsw_m" else 1)):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


CREATE_OPTIONS = frozenset(f.name for f in fields(CollectionOptions))
