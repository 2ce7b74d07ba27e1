"""Errors that the command line reports as one clear message (no traceback)."""


class UserError(Exception):
    """Bad input from the user: a config, a path, a file. The message says what and where."""
