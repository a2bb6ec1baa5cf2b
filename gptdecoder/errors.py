"""The one exception type for mistakes a user can fix (bad config, missing file, ...).

Command-line entry points catch it and print a single ``error: ...`` line with exit
code 2 instead of a traceback; library callers get an ordinary exception.
"""


class UserError(Exception):
    """Something the user can fix; the message says what is wrong and how to fix it."""
