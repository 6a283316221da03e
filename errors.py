"""One exception type for every user-facing error.

The CLI prints a RewindError as one line and exits with code 2; anything else is a bug.
"""


class RewindError(Exception):
    """A problem with the user's input (env id, config key, checkpoint, ...), with what to do."""
