"""``python -m raynas``: the same as the ``raynas`` console script."""

import sys

from raynas.cli import main

sys.exit(main())
