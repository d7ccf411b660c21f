"""Reverts for the peer side of the hostile-peers issue (see tests/reverts/__init__.py)."""

from __future__ import annotations

from tests.reverts.revert import Revert

REVERTS: tuple[Revert, ...] = ()
NOT_ATTACKS: dict[str, str] = {}
