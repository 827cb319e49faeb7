"""Errors and warnings the user can act on.

``InputError`` is raised for bad input (a file, a shape, a setting, an output that cannot be written):
its message names the thing, the problem and what to do. It subclasses ``ValueError`` so callers that
expect ``ValueError`` keep working. The command line prints it as one line and exits with code 2
instead of a traceback.

``InputWarning`` is for input that is usable but deserves a note (a checkpoint that cannot be verified,
a video shorter than its container says); the command line prints it as one line.
"""


class InputError(ValueError):
    """Bad input from the user: the message says what is wrong and what to do."""


class InputWarning(UserWarning):
    """Usable input with a problem worth a note: the message says what and what to do about it."""


class DeviceMemoryError(InputError):
    """A call that does not fit in the device's memory: the message names the size, batch and precision
    and what to try (a smaller batch, bfloat16, a smaller size)."""
