"""Run the ingestor: ``python -m ragstream_ingestor``."""

from __future__ import annotations

from ragstream_common.service import serve
from ragstream_ingestor.app import create_app
from ragstream_ingestor.settings import IngestorSettings


def main() -> None:
    """Read the settings from the environment and serve the ingestor until interrupted."""
    settings = IngestorSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
