"""Errors a user can act on: the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """Something the user can fix (a missing file, a wrong option); the message says what to do."""
