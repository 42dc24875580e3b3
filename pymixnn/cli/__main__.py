"""``python -m pymixnn.cli ...``: the ``pymixnn`` command (see :mod:`pymixnn.cli`)."""

import sys

from pymixnn.cli import main

__all__: list[str] = []

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
