"""The exceptions of the protocols package: one base class, a few precise subclasses.

Every one of them says that input from the network is unacceptable, so catching
``ProtocolError`` means "the peer sent something wrong". Modules add narrower ones where
they need them (``envelope.NetworkMismatch``, ``memsync.WrongTenant``, ``a2a.A2AError``).
A caller that misuses a state machine is a bug, not the peer's fault: that raises
``memsync.SyncStateError``, a ``RuntimeError`` deliberately outside this tree.
"""


class ProtocolError(Exception):
    """Base class of every error raised while decoding or checking network input."""


class DecodeError(ProtocolError):
    """The bytes are not a well-formed message of the expected kind."""


class FrameTooLarge(DecodeError):
    """A frame or message is larger than the limit the receiver accepts."""


class BadSignature(ProtocolError):
    """A signature does not verify against the claimed author's key."""


class Rejected(ProtocolError):
    """A well-formed, well-signed message the receiver must still drop.

    For example: another network, too old or too far in the future, or a replay.
    """


class OverBudget(Rejected):
    """A well-formed, well-signed message dropped for the receiver's budgets (or spoken for
    another identity than its publisher's): not the relaying peer's fault by itself.
    ``reason`` says which budget, for the receiver's counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
