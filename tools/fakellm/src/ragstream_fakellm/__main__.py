"""``python -m ragstream_fakellm --port N``: serve the fake server on loopback until stopped."""

from __future__ import annotations

import argparse

import uvicorn

from ragstream_fakellm.app import create_app


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted.

    Args:
        argv: The arguments; ``sys.argv[1:]`` when None.
    """
    parser = argparse.ArgumentParser(prog="ragstream-fakellm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: loopback)")
    parser.add_argument("--port", type=int, default=8199, help="port (default: 8199)")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
