"""Set-up shared by every test: a hang watchdog and an environment free of LLM settings.

Nothing here may hang: a decoder fed garbage, a sync with a silent peer, a daemon that does
not stop. Hypothesis deadlines only report an example that *finished* late, so every test
runs under a watchdog: if one is still running after its folder's budget, faulthandler
dumps every thread's stack and ends the process, and the run fails loudly instead of
blocking forever. These are hang detectors, not speed assertions: each budget is far above
what the tests of that folder need on a loaded 2-core machine.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshnode.node.home import init_home
from protocols.peerid import Signer

NO_SKIPS_VARIABLE = "MESHNODE_NO_SKIPS"
DEFAULT_BUDGET_S = 60.0
BUDGETS_S = {"agents": 120.0, "memory": 120.0, "sync": 300.0, "integration": 600.0,
              "interop": 300.0, "tests": 300.0}
REVERT_VARIABLE = "MESHNODE_REVERT"
LLM_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "MESHNODE_LLM_API_KEY",
                 "MESHNODE_LLM_BASE_URL", "MESHNODE_LLM_MODEL", "MESHNODE_NETWORK_SECRET")


@pytest.fixture(autouse=True)
def _hang_watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    folder = request.node.path.parent.name
    faulthandler.dump_traceback_later(BUDGETS_S.get(folder, DEFAULT_BUDGET_S), exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _no_llm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own OPENAI_API_KEY must not change what tests (and the daemons they
    start, which inherit this environment) see."""
    for name in LLM_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_user_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may read or write the real ~/.meshnode or honour a developer's MESHNODE_HOME."""
    monkeypatch.delenv("MESHNODE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))


@pytest.fixture(autouse=True)
def _reverted_defence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``MESHNODE_REVERT=name`` (set only by tests/test_reverts.py for a child run),
    one defence is taken out again, as e70e586 had it, for every test of the process."""
    name = os.environ.get(REVERT_VARIABLE)
    if name:
        from tests.reverts import REVERTS

        REVERTS[name].apply(monkeypatch)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An initialised node home (identity, token, config) for network ``test-net``."""
    path = tmp_path / "home"
    init_home(path, network_id="test-net")
    return path


@pytest.fixture
def new_peer_id() -> Callable[[], str]:
    """Make a fresh, real Ed25519 libp2p peer ID."""
    return lambda: Signer.generate().peer_id


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI (`MESHNODE_NO_SKIPS=1`, set by .ci/run) a skipped test fails the run: the
    real parts (Chromium, Node.js, network namespaces, systemd-analyze, MiniLM) are installed
    there, so a skip means a real part silently went missing, not that it is optional."""
    if not os.environ.get(NO_SKIPS_VARIABLE) or exitstatus != pytest.ExitCode.OK:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            print(f"{NO_SKIPS_VARIABLE}: skipped {report.nodeid}: {report.longrepr}",
                  file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
