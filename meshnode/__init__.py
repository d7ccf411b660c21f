"""meshnode: a peer-to-peer mesh of AI agents with no coordinator."""

from importlib.metadata import PackageNotFoundError, version

from meshnode.errors import ApiError, ConfigError, DaemonNotRunning, MeshnodeError

try:
    __version__ = version("meshnode")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["ApiError", "ConfigError", "DaemonNotRunning", "MeshnodeError", "__version__"]
