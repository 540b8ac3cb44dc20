"""``python -m hybrid_qdrant.cli``: the ``hq`` command."""

from hybrid_qdrant.cli import main

main()
