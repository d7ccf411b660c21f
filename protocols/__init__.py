"""Sans-IO wire formats and protocol state machines for meshnode.

Nothing here opens a socket or imports the rest of meshnode: every module turns bytes into
validated values (or raises :class:`ProtocolError`) and values back into bytes.
"""

from protocols.errors import (
    BadSignature,
    DecodeError,
    FrameTooLarge,
    ProtocolError,
    Rejected,
)

__all__ = ["BadSignature", "DecodeError", "FrameTooLarge", "ProtocolError", "Rejected"]
