"""User-facing errors. CLIs catch UserError and print its message as one line (exit code 2), never a traceback."""


class UserError(Exception):
    """A mistake the user can fix: bad config, bad input file, missing weights, unwritable folder."""
