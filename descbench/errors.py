"""The one exception type for errors a user can cause (bad data, config or descriptor).

Its message names the file or value at fault and the fix; the CLI prints it without a traceback.
"""


class DescbenchError(Exception):
    """A user-fixable problem; the message says what is wrong, where, and how to fix it."""
