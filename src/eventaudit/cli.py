"""The ``eventaudit`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from eventaudit import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``eventaudit`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="eventaudit",
        description=(
            "A users service and an append-only, tamper-evident audit log that speak "
            "CloudEvents 1.0 over HTTP or Kafka."
        ),
    )
    parser.add_argument("--version", action="version", version=f"eventaudit {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
