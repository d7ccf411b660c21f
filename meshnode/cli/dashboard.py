"""`meshnode dashboard`: a one-time login link to the local daemon's live dashboard."""

from __future__ import annotations

import argparse
import webbrowser
from typing import Any

from meshnode.cli.client import DaemonClient
from meshnode.node.home import read_runtime, resolve_home


def dashboard_url(client: DaemonClient, api: str) -> str:
    """``<api>/dashboard#code=<one-time code>``: the code rides in the fragment, which the
    browser sends to no server (see meshnode.api.dashboard)."""
    code = client.post("/v1/dashboard/login-code", {})["code"]
    return f"{api.rstrip('/')}/dashboard#code={code}"


def cmd_dashboard(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    client = DaemonClient(home)
    runtime = read_runtime(home) or {}
    url = dashboard_url(client, str(runtime.get("api", "")))
    print(url)
    print("(the link logs in once and expires in 5 minutes; run this again for another)")
    if args.open and not webbrowser.open(url):
        print("could not open a browser here: open the link yourself")
    return 0


def add_dashboard_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("dashboard", parents=[common],
                       help="print (or --open) a login link to the node's live dashboard")
    p.add_argument("--open", action="store_true", help="also open it in a web browser")
    p.set_defaults(func=cmd_dashboard)
