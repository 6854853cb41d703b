"""One exception hierarchy for raynas.

Every message states the rule that was broken and the value that broke it, so a user can fix
the input without reading the code.
"""


class RaynasError(Exception):
    """Base class of every error raynas raises on purpose."""


class SpaceError(RaynasError, ValueError):
    """A search-space file or specification breaks a rule."""


class ArchError(RaynasError, ValueError):
    """An architecture does not belong to its search space."""


class DataError(RaynasError, ValueError):
    """A dataset specification or folder cannot be loaded."""


class ConfigError(RaynasError, ValueError):
    """A training, search or estimation configuration breaks a rule."""


class TrainingError(RaynasError, RuntimeError):
    """Training stopped because its numbers went bad (NaN or inf loss)."""


class ResultsError(RaynasError, ValueError):
    """A result row or a result store breaks the results schema (unknown column, bad type, version)."""


class ExportError(RaynasError, RuntimeError):
    """A compiled program of a child (TorchScript, torch.export) does not reproduce the child."""


class EvaluationError(RaynasError, RuntimeError):
    """Evaluations cannot finish: every evaluator actor that could run them is gone for good."""
