"""The history's record of operator commands (SPEC §13): one `command_runs` row per finished
run, a rung's run also settling what its action row says was applied."""

from __future__ import annotations

from healer.adapters.store_sqlite import Database
from healer.core.commands import CommandKind, CommandResult

__all__ = ["PRUNABLE_RUNS", "insert_command_run"]

# The runs `Store.prune` may delete, older than its cutoff: a run of an open incident is
# kept with it, as the incident's actions are.
PRUNABLE_RUNS = ("ts < ? AND (incident_id IS NULL OR incident_id NOT IN"
                 " (SELECT id FROM incidents WHERE closed_at IS NULL))")


def insert_command_run(
    db: Database, result: CommandResult, kind: CommandKind, incident_id: int | None,
    action_id: int | None,
) -> int:
    """Append the run; its action (a rung's, recorded when the command started) takes the
    run's `ok` and `error`, in the same transaction."""
    req = result.request
    with db.write(f"record command {req.spec.name} for {req.agent or 'the swarm'}") as conn:
        cur = conn.execute(
            "INSERT INTO command_runs (ts, agent, kind, command, transition, attempt,"
            " incident_id, action_id, ok, exit_code, duration, timed_out, output, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (result.ended_at, req.agent, CommandKind(kind).value, req.spec.name,
             req.transition, req.attempt, incident_id, action_id, int(result.ok),
             result.exit_code, result.duration, int(result.timed_out), result.output,
             result.error),
        )
        if action_id is not None:
            conn.execute("UPDATE actions SET applied_ok = ?, error = ? WHERE id = ?",
                         (int(result.ok), result.error, action_id))
    return int(cur.lastrowid or 0)
