"""meshnode: a peer-to-peer mesh of AI agents with no coordinator.

The public API, for a program that hosts agents of its own (see the README's "Bring your
own agent")::

    import meshnode, trio

    async def main() -> None:
        async with meshnode.run_node("~/.meshnode", agents=[my_agent]) as node:
            reply = await node.ask("What is 6 * 7?")

    trio.run(main)

- :class:`Agent`, :class:`Skill`: an agent in code and its card; the handler is an async
  function of a :class:`Context` returning a string or a :class:`Reply`.
- :class:`Context` (with ``.memory``, a :class:`Memory`), :class:`Passage`: what the
  handler can do and read.
- :func:`run_node`, :class:`RunningNode`: a node inside your trio program.
- Errors, one tree under :class:`MeshnodeError`: :class:`AgentFailed` (raise it to fail a
  task with a reason), :class:`AskError` (no answer), :class:`ConfigError`.

The names below the package are loaded when first used, so that ``import meshnode`` stays
cheap for the command line.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from meshnode.errors import ApiError, ConfigError, DaemonNotRunning, MeshnodeError

try:
    __version__ = version("meshnode")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from meshnode.agents.code import (
        Agent,
        AgentFailed,
        Context,
        Handler,
        Memory,
        Passage,
        Reply,
        Skill,
    )
    from meshnode.ask.asker import AskError
    from meshnode.daemon import RunningNode, run_node

#: Public name -> the module that defines it (imported on first use).
_LAZY = {
    **dict.fromkeys(("Agent", "AgentFailed", "Context", "Handler", "Memory", "Passage",
                     "Reply", "Skill"), "meshnode.agents.code"),
    "AskError": "meshnode.ask.asker",
    "RunningNode": "meshnode.daemon",
    "run_node": "meshnode.daemon",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshnode' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Agent",
    "AgentFailed",
    "ApiError",
    "AskError",
    "ConfigError",
    "Context",
    "DaemonNotRunning",
    "Handler",
    "Memory",
    "MeshnodeError",
    "Passage",
    "Reply",
    "RunningNode",
    "Skill",
    "__version__",
    "run_node",
]
