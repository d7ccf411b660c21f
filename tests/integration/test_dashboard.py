"""The dashboard in a real headless Chromium, and the metrics, against real daemons.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright with that
executable (no browser download). Screenshots go to $MESHNODE_ARTIFACTS/dashboard, else to
the test's temporary folder; the path is printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the [test] extra brings it
    pytest.skip("needs playwright", allow_module_level=True)

from meshnode.agents.specs import data_path, demo_agents
from meshnode.cli.demo import agent_toml
from tests.integration.harness import Daemon, cli, cli_json, mesh, wait_for

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
EXPERTS = {spec.name: spec for spec in demo_agents()}
#: A peer's agent card is hostile input: the page must show this as text, never run it.
HOSTILE = '<img src=x onerror="window.__pwned = 1">'
QUESTION = "Which Milvus index type should I use, HNSW or IVF_FLAT?"


def _expert(root: Path, name: str, description: str | None = None) -> Daemon:
    node = Daemon(root, name, "dev-support")
    spec = EXPERTS[name]
    node.add_agent(agent_toml(replace(spec, description=description or spec.description)))
    return node


def _api(node: Daemon) -> str:
    return str(json.loads((node.home / "daemon.json").read_text())["api"])


def _token(node: Daemon) -> str:
    return (node.home / "api.token").read_text().strip()


def _metrics(node: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = httpx.get(_api(node) + "/metrics", timeout=10,
                      headers={"authorization": f"Bearer {_token(node)}"})
    assert reply.status_code == 200, reply.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    base = os.environ.get("MESHNODE_ARTIFACTS")
    folder = (Path(base) if base else tmp_path / "artifacts") / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {folder}")
    return folder


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_the_page_shows_the_mesh_and_answers_a_question(
    tmp_path: Path, browser: Any, shots: Path
) -> None:
    with mesh(tmp_path) as nodes:
        asker = Daemon(tmp_path, "asker", "dev-support").start()
        nodes.append(asker)
        python = _expert(tmp_path, "python-expert", "Python help. " + HOSTILE).start(asker.addr)
        nodes.append(python)
        milvus = _expert(tmp_path, "milvus-expert").start(python.addr)
        nodes.append(milvus)
        for node, topic in ((python, "python"), (milvus, "milvus")):
            assert cli_json(node.home, "memory", "ingest", str(data_path("kb", topic)))["records"]
        wait_for("the asker to know both experts",
                 lambda: len(cli_json(asker.home, "agents")) == 2, timeout=60)

        link = cli(asker.home, "dashboard")
        assert link.returncode == 0, link.stderr
        url = link.stdout.split()[0]
        assert url.startswith(_api(asker) + "/dashboard#code=")

        page = browser.new_page()
        sent: list[str] = []
        page.on("request", lambda request: sent.append(request.url))
        page.goto(url)
        peer_rows = "#peers tbody tr"
        # Polled by Playwright, not by a script in the page: the page's CSP forbids eval.
        expect(page.locator(f"{peer_rows}[data-peer]")).to_have_count(2, timeout=60_000)
        shown = {row.get_attribute("data-peer") for row in page.query_selector_all(peer_rows)}
        assert shown == {python.peer_id, milvus.peer_id}
        assert page.locator("#graph g.peer").count() == 2
        assert page.text_content("#node-id") == asker.peer_id
        page.wait_for_selector("#agents li[data-agent='milvus-expert']")
        # The hostile description is shown as text and never ran.
        assert HOSTILE in (page.text_content("#agents") or "")
        assert page.evaluate("window.__pwned") is None
        # The one-time code left the address bar and was never sent to any server.
        assert "#" not in page.url
        assert all("code=" not in u for u in sent)
        assert all(u.startswith(_api(asker)) for u in sent), sent
        page.screenshot(path=str(shots / "mesh.png"), full_page=True)

        page.fill("#ask-input", QUESTION)
        page.click("#ask-button")
        page.wait_for_selector("#ask-result:not([hidden])", timeout=90_000)
        # Which expert wins is routing's business (tests/integration/test_agents_mesh.py and the
        # evaluation harness); the page must show who answered.
        who = page.text_content("#ask-who") or ""
        assert "answered by" in who and ("milvus-expert" in who or "python-expert" in who)
        assert (page.text_content("#ask-answer") or "").strip()
        citations = page.query_selector_all("#ask-citations li[data-id]")
        assert citations and all(len(c.get_attribute("data-id") or "") == 64 for c in citations)
        assert page.locator("#ask-progress li").count() >= 2  # routed, asking, ...
        page.wait_for_selector("#asks details", timeout=30_000)
        page.screenshot(path=str(shots / "answer.png"), full_page=True)

        # The link logged in once: in a fresh browser context it shows the login notice.
        fresh = browser.new_context().new_page()
        fresh.goto(url)
        fresh.wait_for_selector("#login:not([hidden])")
        assert fresh.is_hidden("#main")
        fresh.screenshot(path=str(shots / "used-link.png"))

        # The ask shows in the metrics: per stage, by outcome, searches on the expert.
        asked = _metrics(asker)
        assert asked[("meshnode_asks_total", (("outcome", "answered"),))] >= 1
        assert asked[("meshnode_ask_stage_seconds_count", (("stage", "network"),))] >= 1
        assert asked[("meshnode_peers", (("state", "connected"),))] == 2
        connections = sum(v for (name, _), v in asked.items()
                          if name == "libp2p_rcmgr_connections")
        assert connections >= 2
        expert = _metrics(milvus)
        assert expert[("meshnode_memory_search_seconds_count", ())] >= 1
        assert expert[("meshnode_memory_records",
                       (("collection", "expert_knowledge"),))] > 5
        assert expert[("meshnode_gossip_messages_total",
                       (("direction", "out"), ("topic", "presence")))] >= 1
        assert expert[("meshnode_gossip_messages_total",
                       (("direction", "in"), ("topic", "presence")))] >= 1


def test_dashboard_and_metrics_refuse_requests_without_the_token(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        node = Daemon(tmp_path, "node", "dev-support").start()
        nodes.append(node)
        api, auth = _api(node), {"authorization": f"Bearer {_token(node)}"}
        with httpx.Client(base_url=api, timeout=10) as http:
            for method, path in (("GET", "/metrics"), ("GET", "/v1/dashboard/events"),
                                 ("POST", "/v1/dashboard/login-code")):
                for headers in ({}, {"authorization": "Bearer wrong"}):
                    assert http.request(method, path, headers=headers).status_code == 401
            # The page itself is public and holds no data.
            page = http.get("/dashboard")
            assert page.status_code == 200 and node.peer_id not in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert page.headers["referrer-policy"] == "no-referrer"
            # A login code gives the token once.
            assert http.post("/dashboard/login", json={"code": "guess"}).status_code == 401
            code = http.post("/v1/dashboard/login-code", headers=auth).json()["code"]
            assert http.post("/dashboard/login", json={"code": code}).json() == {
                "token": _token(node)}
            assert http.post("/dashboard/login", json={"code": code}).status_code == 401
            with http.stream("GET", "/v1/dashboard/events", headers=auth) as events:
                assert events.headers["content-type"] == "text/event-stream"
                first = next(events.iter_lines())
                assert first == "event: snapshot"
        node.stop()

        # public_metrics opens /metrics, and only it.
        node.configure({"api": {"public_metrics": True}})
        node.start()
        with httpx.Client(base_url=_api(node), timeout=10) as http:
            metrics = http.get("/metrics")
            assert metrics.status_code == 200 and "meshnode_info{" in metrics.text
            assert http.get("/v1/dashboard/events").status_code == 401
            assert http.get("/v1/status").status_code == 401

