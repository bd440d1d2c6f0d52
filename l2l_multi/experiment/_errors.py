"""The one error type of a results folder."""

from __future__ import annotations


class RunFolderError(ValueError):
    """A results folder that cannot be used as it is: a damaged or foreign ``config.json``,
    checkpoint or metrics file, a folder whose ``config.json`` was lost, or a folder another process
    holds. The message names the file or folder and says what to do.

    Example:
        >>> issubclass(RunFolderError, ValueError)
        True
    """
