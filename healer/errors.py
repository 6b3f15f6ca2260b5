"""Every exception healer raises on purpose; only cli.py turns them into exit codes."""

from __future__ import annotations

__all__ = [
    "ActionError",
    "ConfigError",
    "HealerError",
    "PayloadError",
    "StoreError",
    "UnsafePathError",
    "UsageError",
    "WorkspaceBusyError",
    "WriteConflictError",
]


class HealerError(Exception):
    """Base of healer's own errors, so callers can tell them from bugs."""


class ConfigError(HealerError):
    """The configuration cannot be used; the message names the key path and the problem.

    Raised at load time so that a bad file stops healer before it touches a workspace.
    """


class UsageError(HealerError):
    """The operator asked for something that cannot be done (e.g. resolve an unknown agent)."""


class PayloadError(UsageError):
    """A hook's payload could not be read, so `healer beat --hook` writes no beat: guessing
    a state from a payload it does not understand could report a waiting agent as working."""


class ActionError(HealerError):
    """A healing or recovery action could not be applied; the daemon records it and goes on."""


class UnsafePathError(ActionError):
    """A write would follow a symlink or leave the workspace root, so it was refused."""


class WriteConflictError(ActionError):
    """The agent kept rewriting a file while healer tried to update it; healer backed off
    rather than clobber the agent's write."""


class WorkspaceBusyError(HealerError):
    """Another healer (a daemon, a `check --now`) holds the workspace's lock: a second one
    acting beside it would take each other's writes for activity and double every action."""


class StoreError(HealerError):
    """The durable history (SQLite) cannot be opened or written."""
