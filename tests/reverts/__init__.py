"""e70e586's behaviour, put back one defence at a time, to show each hostile test can fail.

The hostile-peers issue asks that every attack's test fail on the behaviour of commit
e70e586. The code has moved since (new packages, new wire versions), so running today's
tests against that tree is not possible; instead each :class:`Revert` puts one finding's
old behaviour back into today's code and names the tests that must then fail.
``tests/test_reverts.py`` runs those tests in a child pytest with ``MESHNODE_REVERT`` set
(``tests/conftest.py`` applies the revert) and checks that every one of them fails, and
that every hostile test is named by some revert (or says why it is not an attack).
"""

from __future__ import annotations

from tests.reverts import data, peer, tasks
from tests.reverts.revert import Revert

REVERTS: dict[str, Revert] = {
    r.name: r for r in (*tasks.REVERTS, *peer.REVERTS, *data.REVERTS)}
# Hostile tests that check an honest path still works (nothing to revert), each with why.
NOT_ATTACKS: dict[str, str] = {**tasks.NOT_ATTACKS, **peer.NOT_ATTACKS, **data.NOT_ATTACKS}

__all__ = ["NOT_ATTACKS", "REVERTS", "Revert"]
