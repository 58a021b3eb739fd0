"""Run the embedder: ``python -m ragstream_embedder``."""

from __future__ import annotations

from ragstream_common.service import serve
from ragstream_embedder.app import create_app
from ragstream_embedder.settings import EmbedderSettings


def main() -> None:
    """Read the settings from the environment and serve the embedder until interrupted."""
    settings = EmbedderSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
