"""``python -m ragstream_retriever``: run the retriever with settings from the environment."""

from __future__ import annotations

from ragstream_common.service import serve
from ragstream_retriever.app import create_app
from ragstream_retriever.settings import RetrieverSettings


def main() -> None:
    """Read the settings, build the app and serve it until stopped."""
    settings = RetrieverSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
