"""The `meshnode` command: init a home, run the daemon, and inspect it through its API."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from meshnode import __version__
from meshnode.cli.agents import add_agent_commands
from meshnode.cli.client import DaemonClient
from meshnode.cli.dashboard import add_dashboard_command
from meshnode.cli.demo import add_demo_command
from meshnode.cli.memory import add_memory_commands
from meshnode.cli.output import ago, emit, render_table, say
from meshnode.cli.service import add_service_commands
from meshnode.config import load_config
from meshnode.errors import EXIT_CODES, exit_code, reported
from meshnode.node.home import init_home, resolve_home

Command = Callable[[argparse.Namespace], int]


#: What `meshnode init` says about the one trust decision an operator has to make.
PRE_TRUST_NOTE = (
    "trust: no peer is pre-trusted. This node anchors trust on itself: peers earn it by "
    "answering its questions well, and through the attestations of those it trusts. "
    "Bootstrap peers get no trust for being bootstrap peers. To anchor on peers whose "
    "operators you know (your own other nodes), list their peer IDs in trust.pre_trusted "
    "in config.toml."
)


def cmd_init(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    peer_id, created = init_home(home, network_id=args.network_id, force=args.force)
    if created:
        # The peer ID stays the last line, for scripts that read it.
        print(f"initialised {home}\n" + "\n".join(textwrap.wrap(PRE_TRUST_NOTE, 90))
              + f"\npeer ID: {peer_id}")
    else:
        print(f"{home} already has an identity (kept; --force replaces it)\npeer ID: {peer_id}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from meshnode.daemon import run_daemon  # the daemon's imports are heavy; the CLI's are not
    from meshnode.node.logs import configure_logging

    home = resolve_home(args.home)
    config = load_config(home).with_overrides(
        network_id=args.network_id,
        listen=args.listen,
        bootstrap=args.bootstrap,
        api_listen=args.api,
        network_secret=os.environ.get("MESHNODE_NETWORK_SECRET"),
        log_level=args.log_level,
    )
    configure_logging(config.log_level, config.log_format)
    run_daemon(config)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = DaemonClient(resolve_home(args.home)).get("/v1/status")

    def human(s: dict[str, Any]) -> str:
        rows = [
            ("peer ID", s["peer_id"]),
            ("network", s["network_id"] + (" (private)" if s.get("private") else "")),
            ("version", s.get("version")),
            ("uptime", f"{s['uptime_s']:.0f} s"),
            ("peers", f"{s['connected_peers']} connected, {s['known_peers']} known"),
            ("API", s.get("api")),
        ] + [("listening", a) for a in s["listen_addrs"]] + _reach_rows(s)
        if s.get("memory", "open") != "open":  # still opening (calls wait), or failed
            rows.append(("memory", s["memory"]))
        if s.get("faults"):  # contained, but an operator wants to know
            rows.append(("faults", ", ".join(f"{k}: {n}" for k, n in s["faults"].items())))
        if s.get("refused"):  # what the per-peer budgets refused
            rows.append(("refused", ", ".join(f"{k}: {n}" for k, n in s["refused"].items())))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)

    return emit(args, status, human)


def _reach_rows(s: dict[str, Any]) -> list[tuple[str, Any]]:
    """Reachability, relays and LAN discovery (absent from older daemons' status)."""
    rows: list[tuple[str, Any]] = []
    if "reachability" in s:
        rows.append(("reachability", s["reachability"]))
        rows += [("relay", f"{r['peer_id']} (expires in {r['expires_in_s']} s)")
                 for r in s.get("relays", [])]
        service = s.get("relay_service") or {}
        if service.get("enabled"):
            rows.append(("relay service", f"{service['reservations']} reservations, "
                                          f"{service['circuits']} circuits"))
    if s.get("gossip_only_peers"):
        rows.append(("gossip-only", f"{s['gossip_only_peers']} peers without hello"))
    lan = s.get("lan")
    if lan is not None:
        rows.append(("mDNS", f"{lan['discovered']} found on the LAN"))
    return rows


def cmd_peers(args: argparse.Namespace) -> int:
    peers = DaemonClient(resolve_home(args.home)).get("/v1/peers")

    def human(ps: list[dict[str, Any]]) -> str:
        if not ps:
            return "no peers known yet"
        rows = [
            (
                p["peer_id"],
                (f"yes ({p['connection']})" if p.get("connection") else "yes")
                if p["connected"] else "no",
                "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.1f}",
                ago(p["last_seen"]),
                len(p.get("agents", [])),
                sum(p.get("refused", {}).values()) or "-",
                p["addrs"][0] if p["addrs"] else "-",
            )
            for p in ps
        ]
        return render_table(["PEER", "CONNECTED", "RTT ms", "LAST SEEN", "AGENTS", "REFUSED",
                             "ADDRESS"], rows)

    return emit(args, peers, human)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home", help="node home (default: $MESHNODE_HOME, else ~/.meshnode)", default=None
    )
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")

    parser = argparse.ArgumentParser(
        prog="meshnode", description="A peer-to-peer mesh of AI agents with no coordinator.",
        epilog="exit status: " + "; ".join(f"{code} {meaning}"
                                           for code, meaning in EXIT_CODES.items()),
    )
    parser.add_argument("--version", action="version", version=f"meshnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", parents=[common], help="create the node home and identity")
    p.add_argument("--network-id", default="default", help="mesh to join (default: default)")
    p.add_argument("--force", action="store_true", help="replace an existing identity")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "start",
        parents=[common],
        help="run the node daemon in the foreground",
        description="Run the daemon until SIGINT/SIGTERM. Flags override the config file; "
        "MESHNODE_NETWORK_SECRET overrides node.network_secret.",
    )
    p.add_argument("--network-id", help="mesh to join")
    p.add_argument("--listen", nargs="+", action="extend", metavar="MULTIADDR",
                   help="libp2p listen address(es), e.g. /ip4/0.0.0.0/tcp/4001")
    p.add_argument("--bootstrap", nargs="+", action="extend", metavar="MULTIADDR",
                   help="peer(s) to join through: /ip4/<ip>/tcp/<port>/p2p/<peer-id>")
    p.add_argument("--api", metavar="HOST:PORT", help="local API address (default 127.0.0.1:7700)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("status", parents=[common, output], help="this node at a glance")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("peers", parents=[common, output], help="the peers this node knows")
    p.set_defaults(func=cmd_peers)
    add_memory_commands(sub, common, output)
    add_agent_commands(sub, common, output)
    add_demo_command(sub)
    add_dashboard_command(sub, common)
    add_service_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt as interrupt:
        return exit_code(interrupt)
    except Exception as exc:
        error = reported(exc)
        if error is None:  # a bug: its traceback is the report
            raise
        say(f"meshnode: {error}", file=sys.stderr)  # may quote what a peer said
        return exit_code(error)
    return code

