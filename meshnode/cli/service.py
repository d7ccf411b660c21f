"""`meshnode service unit|install|uninstall`: run the node under systemd, hardened.

The unit runs ``meshnode start`` as a dynamic user (no account to create, no access to
anything but its own state), with its home in the StateDirectory /var/lib/<name>, which
``meshnode init`` fills on first start (idempotent: the identity is kept). The daemon tells
systemd when it is ready (Type=notify); it logs JSON lines on stderr, which journald keeps;
Restart=on-failure brings it back after a crash or a kill.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from meshnode.errors import ConfigError

UNIT_DIR = Path("/etc/systemd/system")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
#: Sandboxing that holds for a Python daemon with Milvus Lite and libp2p over TCP. Not set on
#: purpose: MemoryDenyWriteExecute (libffi closures, used by cryptography's cffi, need W+X
#: pages) and a SystemCallFilter (Milvus Lite's embedded server was not verified under one).
HARDENING = """\
DynamicUser=yes
ProtectSystem=strict
ProtectHome={protect_home}
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
UMask=0077
"""


def _quote(arg: str) -> str:
    # systemd's command-line syntax: double quotes, with backslash escapes, and % and $
    # doubled so that no specifier or variable is expanded. A line break would end the
    # setting (and could start another): none is allowed.
    if any(ord(c) < 32 or ord(c) == 127 for c in arg):
        raise ConfigError(f"control character in {arg!r}")
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


def _command(args: list[str]) -> str:
    return " ".join(_quote(a) for a in args)


def render_unit(
    *,
    name: str = "meshnode",
    python: str | None = None,
    network_id: str = "default",
    bootstrap: tuple[str, ...] = (),
    listen: tuple[str, ...] = (),
    api: str | None = None,
) -> str:
    """The unit file text. ``python`` is the interpreter with meshnode installed."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"service name {name!r}: use letters, digits, '-', '_' or '.'")
    python = python or sys.executable
    home = f"/var/lib/{name}"
    base = [python, "-m", "meshnode.cli"]
    start = [*base, "start", "--home", home]
    if listen:
        start += ["--listen", *listen]
    if bootstrap:
        start += ["--bootstrap", *bootstrap]
    if api:
        start += ["--api", api]
    # An interpreter in a home directory (a user's virtualenv) must stay readable.
    in_home = python.startswith(("/home/", "/root/", "/run/user/"))
    return f"""\
# Written by `meshnode service install`. The node's home (identity, config, memory) is
# {home}; edit {home}/config.toml and restart to change its settings.
[Unit]
Description=meshnode node (network {network_id})
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStartPre={_command([*base, "init", "--home", home, "--network-id", network_id])}
ExecStart={_command(start)}
Environment=PYTHONUNBUFFERED=1
StateDirectory={name}
StateDirectoryMode=0700
WorkingDirectory={home}
Restart=on-failure
RestartSec=2
TimeoutStartSec=180
TimeoutStopSec=30
StandardOutput=journal
StandardError=journal
SyslogIdentifier={name}
{HARDENING.format(protect_home="read-only" if in_home else "yes")}
[Install]
WantedBy=multi-user.target
"""


def _systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def _systemctl(*args: str) -> None:
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"systemctl {' '.join(args)}: {result.stderr.strip()}", file=sys.stderr)


def _unit_path(args: argparse.Namespace) -> Path:
    return Path(args.unit_dir) / f"{args.name}.service"


def _rendered(args: argparse.Namespace) -> str:
    return render_unit(name=args.name, python=args.python, network_id=args.network_id,
                       bootstrap=tuple(args.bootstrap or ()), listen=tuple(args.listen or ()),
                       api=args.api)


def cmd_unit(args: argparse.Namespace) -> int:
    print(_rendered(args), end="")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    path = _unit_path(args)
    text = _rendered(args)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc} (run as root?)") from None
    print(f"wrote {path}")
    steps = [f"systemctl enable --now {args.name}", f"journalctl -u {args.name} -f",
             f"meshnode status --home /var/lib/{args.name}"]
    if _systemd_running():
        _systemctl("daemon-reload")
    else:
        steps.insert(0, "systemctl daemon-reload")
        print("systemd is not running here: the unit was written but not loaded")
    print("next:\n" + "\n".join("  " + shlex.join(s.split()) for s in steps))
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    path = _unit_path(args)
    if _systemd_running():
        _systemctl("disable", "--now", args.name)
    try:
        path.unlink()
    except FileNotFoundError:
        print(f"{path} was not installed")
        return 1
    except OSError as exc:
        raise ConfigError(f"cannot remove {path}: {exc} (run as root?)") from None
    if _systemd_running():
        _systemctl("daemon-reload")
    print(f"removed {path}; the node's home /var/lib/{args.name} (its identity and memory) "
          "is kept: delete it yourself if you mean to")
    return 0


def add_service_commands(sub: Any) -> None:
    service = sub.add_parser("service", help="run the node under systemd (hardened unit)")
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default="meshnode", help="unit name (default: meshnode)")
    common.add_argument("--unit-dir", default=str(UNIT_DIR),
                        help=f"where the unit goes (default: {UNIT_DIR})")
    settings = argparse.ArgumentParser(add_help=False)
    settings.add_argument("--network-id", default="default", help="mesh to join on first start")
    settings.add_argument("--bootstrap", nargs="+", action="extend", metavar="MULTIADDR")
    settings.add_argument("--listen", nargs="+", action="extend", metavar="MULTIADDR")
    settings.add_argument("--api", metavar="HOST:PORT", help="local API address")
    settings.add_argument("--python", help="interpreter with meshnode installed "
                          "(default: this one)")
    p = actions.add_parser("unit", parents=[common, settings], help="print the unit file")
    p.set_defaults(func=cmd_unit)
    p = actions.add_parser("install", parents=[common, settings],
                           help="write the unit file and reload systemd")
    p.set_defaults(func=cmd_install)
    p = actions.add_parser("uninstall", parents=[common],
                           help="stop and disable the service and remove its unit file")
    p.set_defaults(func=cmd_uninstall)
