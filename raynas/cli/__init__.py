"""The ``raynas`` command line: thin entry points over the package's API."""

from raynas.cli.main import main

__all__ = ["main"]
