"""Errors that carry a message a user can act on."""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's files or options: the message says what to do.

    `path` names the file or directory at fault, when there is one.
    """

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class InvalidRequest(ValueError):
    """A request that cannot be served (empty text, bad encoding...): report, keep serving."""
