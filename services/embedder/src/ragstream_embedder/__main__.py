"""Run the embedder: ``python -m ragstream_embedder``."""

from __future__ import annotations

import os

# Before torch loads OpenMP, which reads it once. OpenMP's threads otherwise spin while they wait
# for each other, and on a node the model shares with Kafka, Weaviate and the other services a
# spinning thread holds a core that a neighbour needed, so the neighbour preempts the model
# longer: in a 120-document burst the embedder burnt 32-35 CPU-s at the default policy and 26-28
# passive, for 6% more chunks/s (bench/README.md). An explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ragstream_common.service import serve
from ragstream_embedder.app import create_app
from ragstream_embedder.settings import EmbedderSettings


def main() -> None:
    """Read the settings from the environment and serve the embedder until interrupted."""
    settings = EmbedderSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
