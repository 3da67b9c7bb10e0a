"""The ``lfws`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lfws`` command; return its exit status."""
    parser = argparse.ArgumentParser(
        prog="lfws",
        description="Real-time, bidirectional sync for local-first Python apps over WebSockets.",
    )
    parser.add_subparsers(dest="command", metavar="COMMAND")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0  # pragma: no cover - every subcommand returns on its own


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
