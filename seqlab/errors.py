"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""

from __future__ import annotations


class SeqlabError(Exception):
    """Something the user can fix: bad data, a bad checkpoint, an impossible configuration."""

    exit_code = 2


class ConfigError(SeqlabError):
    """A combination of config values that cannot work (the message names the keys)."""


class DataError(SeqlabError):
    """A data file is missing, empty, malformed or inconsistent (the message names it)."""


class CheckpointError(SeqlabError):
    """A checkpoint is missing, corrupt, unsafe or does not match the configuration."""


class TrainingDiverged(SeqlabError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""

    exit_code = 3
