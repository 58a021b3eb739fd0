"""``python -m ragstream_generator``: serve the generator until stopped."""

from __future__ import annotations

from ragstream_common.service import serve
from ragstream_generator.app import create_app
from ragstream_generator.settings import GeneratorSettings


def main() -> None:
    """Read the settings from the environment and serve the generator."""
    settings = GeneratorSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
