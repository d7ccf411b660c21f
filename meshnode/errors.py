"""The exceptions of the meshnode package: one base class, one subclass per failure kind."""


class MeshnodeError(Exception):
    """Base class of every error meshnode reports to its user."""


class ConfigError(MeshnodeError):
    """The node home or its config file is missing or invalid."""


class DaemonNotRunning(MeshnodeError):
    """The CLI could not reach a daemon for this home."""


class ApiError(MeshnodeError):
    """The daemon answered a CLI request with an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
