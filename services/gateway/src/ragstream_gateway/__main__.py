"""Run the gateway: ``python -m ragstream_gateway``."""

from __future__ import annotations

from ragstream_common.service import serve
from ragstream_gateway.app import create_app
from ragstream_gateway.settings import GatewaySettings


def main() -> None:
    """Read the settings from the environment and serve the gateway with uvicorn."""
    settings = GatewaySettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
