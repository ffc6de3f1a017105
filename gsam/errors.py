"""Errors a user can fix: the CLI prints them as one line, without a traceback."""


class GSAMError(Exception):
    """Base class for errors caused by input, files or the environment rather than a bug."""
