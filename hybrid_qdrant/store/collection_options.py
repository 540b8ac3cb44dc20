"""How a new collection is built: quantization, HNSW, sharding, on-disk storage."""

from __future__ import annotations

from dataclasses import dataclass, fields

#: Quantization kinds: int8 scalar, 1-bit binary, product (codebooks).
QUANTIZATIONS = ("scalar", "binary", "product")
#: Product quantization: how many times smaller than float32 the codes are.
PRODUCT_COMPRESSIONS = (4, 8, 16, 32, 64)
#: Qdrant's defaults where an option is left unset (both engines): HNSW degree, build beam, and the
#: full-scan threshold in KB of vectors (a filter matching fewer is searched exhaustively; 10,000 KB is
#: 6,666 vectors of 384 float32) and the product-quantization compression this project picks.
QDRANT_HNSW_M = 16
QDRANT_HNSW_EF_CONSTRUCT = 100
QDRANT_FULL_SCAN_THRESHOLD_KB = 10_000
#: Qdrant's default indexing threshold: a segment with fewer KB of vectors gets no HNSW graph.
QDRANT_INDEXING_THRESHOLD_KB = 10_000
DEFAULT_PRODUCT_COMPRESSION = 16


@dataclass(frozen=True)
class CollectionOptions:
    """How a new collection is built (ignored for existing ones and, mostly, by local mode).

    The embedded engine honours the index options (quantization, HNSW); the cluster and disk options
    are for servers.

    Attributes:
        quantization: None, ``scalar`` (int8), ``binary`` (1 bit) or ``product``; originals are kept for
            rescoring, the quantized vectors stay in RAM.
        product_compression: product quantization: 4, 8, 16 (default), 32 or 64 times smaller.
        hnsw_m / hnsw_ef_construct: HNSW graph degree and build beam width.
        hnsw_full_scan_threshold: KB of vectors below which a filtered search skips the graph and
            scores every matching point (Qdrant's default 10,000).
        indexing_threshold: KB of vectors a segment needs before it gets an HNSW graph (Qdrant's
            default 10,000: about 6,600 vectors of 384 floats; 0 turns indexing off).
        shard_number / replication_factor: cluster layout.
        on_disk: keep original vectors (and the HNSW graph) on disk, memory-mapped.
        on_disk_payload: keep payloads on disk.
    """

    quantization: str | None = None
    product_compression: int | None = None
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    hnsw_full_scan_threshold: int | None = None
    indexing_threshold: int | None = None
    shard_number: int | None = None
    replication_factor: int | None = None
    on_disk: bool | None = None
    on_disk_payload: bool | None = None

    def __post_init__(self) -> None:
        if self.quantization not in (None, *QUANTIZATIONS):
            raise ValueError(
                f"quantization must be one of {', '.join(map(repr, QUANTIZATIONS))} or None, "
                f"got {self.quantization!r}"
            )
        if self.product_compression is not None:
            if self.product_compression not in PRODUCT_COMPRESSIONS:
                raise ValueError(
                    f"product_compression must be one of {PRODUCT_COMPRESSIONS}, "
                    f"got {self.product_compression!r}"
                )
            if self.quantization != "product":
                raise ValueError("product_compression applies to quantization = 'product' only")
        counts = ("hnsw_ef_construct", "hnsw_full_scan_threshold", "shard_number", "replication_factor")
        for name in ("hnsw_m", "indexing_threshold", *counts):  # the first two may be 0 (off)
            value = getattr(self, name)
            low = 1 if name in counts else 0
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    def index(self) -> CollectionOptions:
        """Only the index options (what the embedded engine honours)."""
        return CollectionOptions(**{name: getattr(self, name) for name in INDEX_OPTIONS})

    def set_options(self) -> dict[str, object]:
        """The options that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


CREATE_OPTIONS = frozenset(f.name for f in fields(CollectionOptions))
#: The options that shape the vector index (quantization, HNSW), honoured by both engines.
INDEX_OPTIONS = frozenset(
    {
        "quantization",
        "product_compression",
        "hnsw_m",
        "hnsw_ef_construct",
        "hnsw_full_scan_threshold",
        "indexing_threshold",
    }
)
