"""How a supernet picks its children per training step: the names every layer agrees on.

Plain data with no imports, below ``raynas.train``, so the search driver, the family records and
the CLI validate a sampling without importing the training layer (``tests/test_layering.py``).
``TrainConfig.sampling`` says what each one does.
"""

SAMPLINGS = ("sandwich", "uniform")
"""``"sandwich"`` (BigNAS: largest, smallest and random children) or ``"uniform"`` (SPOS: random children only)."""
