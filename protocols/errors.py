"""The exceptions of the protocols package: one base class, a few precise subclasses."""


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
