"""Errors the user can act on.

``InputError`` is raised for bad input (a file, a shape, a setting): its message names the thing, the
problem and what to do. It subclasses ``ValueError`` so callers that expect ``ValueError`` keep working.
The command line prints it as one line and exits with code 2 instead of a traceback.
"""


class InputError(ValueError):
    """Bad input from the user: the message says what is wrong and what to do."""
