"""The errors this project raises on purpose: one root, one family per kind of problem.

`builder` turns each family into its exit code (`builder --help` lists them): a user's files or
options (UserError, 2), a server that failed (ServerError, 3), something the builder itself got
wrong (BuildBug, 5); anything else is unexpected (4). Clients and the serving steps use the other
families. Every message says what to do.
"""
from __future__ import annotations


class ErnieServingError(Exception):
    """The root: every error below carries a message a user can act on."""


class UserError(ErnieServingError):
    """A problem with the user's files or options: the message says what to do.

    `path` names the file or directory at fault, when there is one.
    """

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class ServerError(ErnieServingError):
    """A server (Triton, Paddle Serving) did not start, stopped or failed; the message has the
    end of its log."""


class BuildBug(ErnieServingError):
    """The builder produced something that does not fit together (e.g. an ensemble's wiring):
    a bug in the builder, to report, never the user's doing."""


class ClientError(ErnieServingError):
    """A server refused a request, did not answer, or serves a model that is not what the client
    expects."""


class InvalidRequest(ErnieServingError, ValueError):
    """A request that cannot be served (empty text, bad encoding...): report, keep serving."""


EXIT_CODES = {UserError: 2, ServerError: 3, ClientError: 3, BuildBug: 5}  # anything else that escapes: 4
