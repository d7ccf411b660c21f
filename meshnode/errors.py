"""The exceptions of the meshnode package, and what each error means to a user.

One root, :class:`MeshnodeError`; each sub-package adds the subclasses it raises, next to
the code that raises them::

    MeshnodeError                       http_status 500 unless said otherwise
    ├── ConfigError                     errors.py: the node home or config is unusable
    ├── DaemonNotRunning                errors.py: the CLI found no daemon for its home
    ├── ApiError                        errors.py: the daemon answered the CLI with an error
    ├── LLMError, AgentError            agents/: the LLM or an agent's memory failed
    ├── AgentFailed                     agents/code.py: an agent in code fails its task
    ├── RemoteAgentError                agents/remote.py: an A2A server could not be used
    ├── DialError                       node/host.py: a peer cannot be reached
    ├── KnowledgeError          404     node/knowledge.py: no such record
    │   └── NotAuthor           403       a record that only its author may delete
    ├── TrustStateError                 trust/graph.py: the saved trust state is unreadable
    ├── AskError                        ask/asker.py: no agent gave an acceptable answer
    │   ├── UnknownAnswer       404       rating an answer that is not waiting for one
    │   └── ConsultFailed                 ask/delegation.py: a consultation gave no answer
    └── HttpError               (any)   api/app.py: a request handler's own refusal

The packages below have their own roots: ``protocols.errors.ProtocolError``,
``memory.errors.MemoryStoreError`` and ``bootstrap.BootstrapError``.

What an error becomes is decided here, once: :func:`http_status` (the local API's answer),
:func:`exit_code` (the ``meshnode`` command's exit status) and :func:`reported` (which
errors are told to the user in one line, and which are bugs whose traceback must show).
"""

from __future__ import annotations

from bootstrap.network import BootstrapError
from memory.errors import (
    EmbedderError,
    IngestError,
    InvalidRecord,
    MemoryStoreError,
    StoreUnavailable,
)
from protocols.errors import ProtocolError

#: Exit statuses of the ``meshnode`` command (documented in its --help and the README).
EXIT_OK = 0
#: Any error meshnode reports, in one line on stderr: no daemon, a bad config, a request
#: the daemon refused, an ask no agent could answer, records rejected by an import...
EXIT_ERROR = 1
#: The command line itself is wrong (argparse's own status).
EXIT_USAGE = 2
#: Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_ERROR: "an error, explained in one line on stderr",
    EXIT_USAGE: "the command line is wrong (see --help)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class MeshnodeError(Exception):
    """Base class of every error meshnode reports to its user."""

    #: The local API's status for a request that fails with this error.
    http_status: int = 500


class ConfigError(MeshnodeError):
    """The node home or its config file is missing or invalid."""


class DaemonNotRunning(MeshnodeError):
    """The CLI could not reach a daemon for this home."""


class ApiError(MeshnodeError):
    """The daemon answered a CLI request with an error (``status`` is its HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: The HTTP status of the errors of the packages below meshnode, most precise first.
_FOREIGN_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (InvalidRecord, 400),  # a record in the request fails validation
    (IngestError, 400),  # a path to ingest is missing or not text
    (StoreUnavailable, 503),  # Milvus is down: try again later
    (EmbedderError, 503),  # the embeddings endpoint failed
    (MemoryStoreError, 500),
    (ProtocolError, 400),  # the request carried something malformed
    (BootstrapError, 400),
)
#: The roots of the error trees whose errors meshnode tells its user (anything else is a bug).
REPORTED = (MeshnodeError, MemoryStoreError, ProtocolError, BootstrapError, OSError)


def http_status(error: BaseException) -> int:
    """The HTTP status the local API answers when a request fails with ``error``."""
    if isinstance(error, MeshnodeError):
        return error.http_status
    for cls, status in _FOREIGN_STATUS:
        if isinstance(error, cls):
            return status
    return 500


def exit_code(error: BaseException) -> int:
    """The exit status of a ``meshnode`` command that fails with ``error``."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_ERROR


def reported(error: BaseException) -> Exception | None:
    """The error to tell the user about ``error``: itself, or for an exception group the
    first of its leaves that belongs to a known tree (or is an OSError: a port in use, a
    missing file); None when there is none, which is a bug whose traceback should show."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = reported(inner)
            if found is not None:
                return found
        return None
    return error if isinstance(error, REPORTED) else None
