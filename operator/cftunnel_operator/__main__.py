"""Process entry point: ``python -m cftunnel_operator`` and the ``cftunnel-operator`` command."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the operator until it is stopped."""
    from cftunnel_operator.handlers.run import run_operator

    return run_operator(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
