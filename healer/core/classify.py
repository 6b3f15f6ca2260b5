"""Which agent a filesystem event belongs to, and whether it is that agent's own work (SPEC §1)."""

from __future__ import annotations

from collections.abc import Callable

from healer.core.heartbeat import HEARTBEAT_FILE
from healer.core.model import STATUS_FILE, EventKind, InboxMode, Observation, is_own_temp_name

__all__ = ["classify", "split_path"]

INBOX = "inbox"
DEVLOGS = "devlogs"
# The agent's own files at the top of its folder: any write to one is its activity.
_TOP_FILES = (STATUS_FILE, HEARTBEAT_FILE)


def split_path(relpath: str) -> tuple[str, ...]:
    """Path parts relative to the workspace root; empty for the root itself."""
    return tuple(p for p in relpath.split("/") if p and p != ".")


def _is_activity_file(parts: tuple[str, ...]) -> bool:
    if len(parts) == 2 and parts[1] in _TOP_FILES:
        return True
    return len(parts) >= 2 and parts[1] == DEVLOGS


def _is_beat(parts: tuple[str, ...]) -> bool:
    return len(parts) == 2 and parts[1] == HEARTBEAT_FILE


def _inbox_depth(parts: tuple[str, ...]) -> int | None:
    """1 for a message at the top of inbox/, 2+ inside a subfolder, None outside inbox/."""
    if len(parts) >= 3 and parts[1] == INBOX:
        return len(parts) - 2
    return None


def _single(parts: tuple[str, ...], kind: EventKind, inbox_mode: InboxMode) -> bool:
    if _is_activity_file(parts):
        return True
    depth = _inbox_depth(parts)
    if depth is None or inbox_mode == InboxMode.NONE:
        return False
    if inbox_mode == InboxMode.ANY:
        return True
    # consume: a message vanishing is the agent reading it; a file appearing or being
    # written is mail from someone else.
    return kind is EventKind.DELETED


def _move(src: tuple[str, ...], dest: tuple[str, ...], inbox_mode: InboxMode) -> bool:
    if _is_activity_file(src) or _is_activity_file(dest):
        return True
    src_depth, dest_depth = _inbox_depth(src), _inbox_depth(dest)
    if src_depth is None and dest_depth is None:
        return False
    if inbox_mode != InboxMode.CONSUME:
        return inbox_mode == InboxMode.ANY
    if src_depth == 1 and dest_depth == 1:
        return False  # a sender's temp file renamed into place: delivery, not consumption
    if src_depth is None:
        # moved in from outside: delivery at the top, filing by the agent into a subfolder
        return dest_depth is not None and dest_depth > 1
    return True  # a message moved out of the inbox or into/out of a subfolder


def classify(
    relpath: str,
    kind: EventKind,
    *,
    dest: str | None = None,
    inbox_mode: InboxMode = InboxMode.CONSUME,
    is_agent: Callable[[str], bool] = lambda name: True,
) -> tuple[Observation, ...]:
    """Observations for one event; a rename may touch two agents. Never raises.

    Events on healer's own temp files (and renames out of them) are not observed at all.
    `beat` marks an event of the agent's heartbeat.json, which the daemon then reads.
    `inbox_mode` is compared by value, so the plain string of a mode works as well.
    """
    src = split_path(relpath)
    if not src or not is_agent(src[0]) or is_own_temp_name(src[-1]):
        src = ()
    if kind is not EventKind.MOVED or dest is None:
        if not src:
            return ()
        return (Observation(src[0], len(src) > 1 and _single(src, kind, inbox_mode),
                            _is_beat(src)),)
    dst = split_path(dest)
    raw_src = split_path(relpath)
    if (raw_src and is_own_temp_name(raw_src[-1])) or (dst and is_own_temp_name(dst[-1])):
        # healer renamed its temp file into place, or swapped it with the old file
        # (RENAME_EXCHANGE): both halves are healer's own write.
        return ()
    if not dst or not is_agent(dst[0]):
        dst = ()
    if src and dst and src[0] == dst[0]:
        return (Observation(src[0], _move(src, dst, inbox_mode),
                            _is_beat(src) or _is_beat(dst)),)
    # A rename across agents is a deletion for one and a creation for the other.
    sides = ((src, EventKind.DELETED), (dst, EventKind.CREATED))
    return tuple(
        Observation(parts[0], len(parts) > 1 and _single(parts, side_kind, inbox_mode),
                    _is_beat(parts))
        for parts, side_kind in sides
        if parts
    )
