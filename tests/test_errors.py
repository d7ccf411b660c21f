"""meshnode.errors: one tree per package, and one mapping to HTTP statuses and exit codes."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from bootstrap.network import BootstrapError
from memory.errors import (
    BackendError,
    EmbedderError,
    IngestError,
    InvalidRecord,
    MemoryStoreError,
    StoreUnavailable,
)
from meshnode.api.app import HttpError
from meshnode.ask.asker import AskError, UnknownAnswer
from meshnode.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    ConfigError,
    MeshnodeError,
    exit_code,
    http_status,
    reported,
)
from meshnode.node.knowledge import KnowledgeError, NotAuthor
from protocols.errors import DecodeError, ProtocolError

ROOT = Path(__file__).resolve().parent.parent
ROOTS = {
    "meshnode": MeshnodeError,
    "memory": MemoryStoreError,
    "protocols": ProtocolError,
    "bootstrap": BootstrapError,
}
#: Raised only when a caller misuses a state machine: a bug, deliberately outside the tree so
#: that no ``except ProtocolError`` (which blames the peer) can catch it.
NOT_ERRORS = {"protocols.memsync.SyncStateError", "protocols.a2a.session.SessionError"}
#: Requests to stop, like KeyboardInterrupt: BaseExceptions no ``except Exception`` catches.
STOP_REQUESTS = {"meshnode.cli.children.Stopped"}


def _error_classes() -> list[tuple[str, type[BaseException]]]:
    found = []
    for package in ROOTS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(p for p in parts if p != "__init__")
            if name.endswith("__main__"):
                continue
            module = importlib.import_module(name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == name:
                    found.append((f"{name}.{cls.__qualname__}", cls))
    return found


ERRORS = _error_classes()


@pytest.mark.parametrize(("name", "cls"), ERRORS, ids=[name for name, _ in ERRORS])
def test_every_error_is_in_its_packages_tree(name: str, cls: type[BaseException]) -> None:
    if name in NOT_ERRORS:
        assert issubclass(cls, RuntimeError) and not issubclass(cls, ProtocolError)
        return
    if name in STOP_REQUESTS:
        assert not issubclass(cls, Exception)
        return
    package = name.split(".")[0]
    assert issubclass(cls, ROOTS[package]), f"{name} is not a {ROOTS[package].__name__}"
    others = [root for p, root in ROOTS.items() if p != package]
    assert not issubclass(cls, tuple(others)), f"{name} is in another package's tree"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (HttpError(418, "teapot"), 418),
        (KnowledgeError("no record x"), 404),
        (NotAuthor("not yours"), 403),
        (UnknownAnswer("no such answer"), 404),
        (AskError("nobody answered"), 500),
        (ConfigError("bad"), 500),
        (DecodeError("malformed"), 400),
        (InvalidRecord("bad record"), 400),
        (IngestError("no such file"), 400),
        (StoreUnavailable("Milvus is down"), 503),
        (EmbedderError("endpoint down"), 503),
        (BackendError("refused"), 500),
        (BootstrapError("bad address"), 400),
        (RuntimeError("a bug"), 500),
    ],
)
def test_http_status(error: Exception, status: int) -> None:
    assert http_status(error) == status


def test_exit_codes() -> None:
    assert exit_code(ConfigError("x")) == exit_code(StoreUnavailable("x")) == EXIT_ERROR == 1
    assert exit_code(KeyboardInterrupt()) == EXIT_INTERRUPTED == 130


def test_reported_errors_and_bugs() -> None:
    config = ConfigError("bad config")
    port = OSError(98, "Address already in use")
    assert reported(config) is config and reported(port) is port
    assert reported(RuntimeError("bug")) is None and reported(KeyboardInterrupt()) is None
    # From a nursery: the first leaf of a known tree, however deep.
    group = BaseExceptionGroup("nursery", [
        RuntimeError("bug"), ExceptionGroup("inner", [ValueError("x"), config]), port,
    ])
    assert reported(group) is config
    assert reported(ExceptionGroup("only bugs", [ValueError("x")])) is None
