"""Errors the CLI reports as one line (no traceback)."""


class UserError(Exception):
    """Bad user input: the message is one line, `<file or flag>: <key>: expected ..., got ...`.

    The CLI prints it as `kpbench: error: <message>` on stderr and exits with code 2.
    """
