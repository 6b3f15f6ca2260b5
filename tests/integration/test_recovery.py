"""Task reassignment on real files and a real history: the work is spread by what each agent
holds in its status.json plus what healer itself sent it since that file last changed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from healer.adapters import jsontext
from healer.adapters.jsontext import TextForm
from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.store import Store
from healer.adapters.writer import SafeWriter
from healer.history import History
from healer.pipelines import recovery
from healer.pipelines.healing import ActionOutcome, Context
from healer.testing import FakeClock
from tests.conftest import make_agent

STALLED = ("Agent-S1", "Agent-S2", "Agent-S3")
HEALTHY = ("Agent-H1", "Agent-H2", "Agent-H3")


def swarm(root: Path, healthy_tasks: tuple[int, ...] = (0, 0, 0)) -> None:
    for n, agent in enumerate(STALLED):
        make_agent(root, agent, {"agent_id": agent, "current_tasks": [f"{agent} task {k}"
                                                                      for k in range(2 + n)]})
    for agent, count in zip(HEALTHY, healthy_tasks, strict=True):
        make_agent(root, agent, {"agent_id": agent,
                                 "current_tasks": [f"own {k}" for k in range(count)]})


def reassign(
    root: Path, agent: str, sent: recovery.SentTasks | None, *, dry_run: bool = False
) -> ActionOutcome:
    now = time.time()
    writer = SafeWriter(root, SelfWriteLedger(), dry_run=dry_run)
    return recovery.reassign_tasks(writer, Context(agent, now, 0, 500.0, now - 500),
                                   list(HEALTHY), sent)


def messages(root: Path, agent: str) -> list[str]:
    return sorted(p.name for p in (root / agent / "inbox").glob("HEALER_REASSIGN_*"))


@pytest.fixture
def history(tmp_path: Path) -> History:
    clock = FakeClock(time.time())
    return History(Store.open(tmp_path / "state" / "healer.db", clock=clock), clock)


class TestSpreading:
    def test_three_stalled_agents_go_to_three_healthy_agents(
        self, root: Path, history: History
    ) -> None:
        """Each reassignment counts what healer sent before it (before, the least-loaded
        agent by its own file stayed least-loaded and received everything)."""
        swarm(root)
        outcomes = [reassign(root, agent, history) for agent in STALLED]
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        assert [o.detail["to"] for o in outcomes] == list(HEALTHY)
        assert [o.detail["tasks"] for o in outcomes] == [2, 3, 4]
        assert [len(messages(root, agent)) for agent in HEALTHY] == [1, 1, 1]

    def test_without_the_history_the_files_alone_decide(self, root: Path) -> None:
        """The old rule, kept for a caller with no history: every task to one agent."""
        swarm(root)
        assert {reassign(root, agent, None).detail["to"] for agent in STALLED} == {"Agent-H1"}

    def test_the_load_adds_the_file_and_what_was_sent(self, root: Path, history: History) -> None:
        """H1 holds 1 task and H2 3: H1 takes S1's 2 (1 < 3) and then S2's 3 too (1 + 2 = 3,
        a tie H1 wins by rank); S3's 4 then go to H2 (3 < 1 + 2 + 3)."""
        swarm(root, (1, 3, 9))
        targets = [reassign(root, agent, history).detail["to"] for agent in STALLED]
        assert targets == ["Agent-H1", "Agent-H1", "Agent-H2"]

    def test_sent_tasks_count_until_the_receiver_rewrites_its_file(
        self, root: Path, history: History
    ) -> None:
        """Once H1 rewrites status.json listing the 2 tasks it took up, they count once (from
        the file), not twice: H1 (2) is then below H2 (0 + 3 sent) again."""
        swarm(root, (0, 0, 9))
        assert reassign(root, "Agent-S1", history).detail["to"] == "Agent-H1"  # a tie: by rank
        assert reassign(root, "Agent-S2", history).detail["to"] == "Agent-H2"  # 0 < 0 + 2
        status = root / "Agent-H1" / "status.json"
        doc = json.loads(status.read_text())
        status.write_text(json.dumps({**doc, "current_tasks": ["S1 task 0", "S1 task 1"]}))
        assert reassign(root, "Agent-S3", history).detail["to"] == "Agent-H1"  # 2 < 3, not 4

    def test_the_count_survives_a_restart(self, root: Path, tmp_path: Path) -> None:
        swarm(root)
        path = tmp_path / "state" / "healer.db"
        with Store.open(path) as store:
            assert reassign(root, "Agent-S1", store).detail["to"] == "Agent-H1"
        with Store.open(path) as store:
            assert reassign(root, "Agent-S2", store).detail["to"] == "Agent-H2"

    def test_a_broken_history_falls_back_to_the_files(self, root: Path, tmp_path: Path) -> None:
        """A history that fails (here: closed) costs the spreading, not the reassignment."""
        swarm(root)
        store = Store.open(tmp_path / "state" / "healer.db")
        store.close()
        outcome = reassign(root, "Agent-S1", store)
        assert outcome.ok and outcome.detail["to"] == "Agent-H1"

    def test_a_dry_run_records_nothing(self, root: Path, history: History) -> None:
        swarm(root)
        assert reassign(root, "Agent-S1", history, dry_run=True).detail["to"] == "Agent-H1"
        assert reassign(root, "Agent-S2", history).detail["to"] == "Agent-H1"


class TestWhatIsReported:
    def test_no_open_task_is_ok_and_says_zero(self, root: Path, history: History) -> None:
        """Nothing was left to hand on: ok, `tasks: 0`, no message, nothing recorded."""
        swarm(root)
        make_agent(root, "Agent-S1", {"current_tasks": ["✅ COMPLETED: all of it"]})
        outcome = reassign(root, "Agent-S1", history)
        assert (outcome.ok, outcome.detail) == (True, {"tasks": 0})
        assert all(messages(root, agent) == [] for agent in HEALTHY)
        assert reassign(root, "Agent-S2", history).detail["to"] == "Agent-H1"

    def test_an_unreadable_file_is_not_ok(self, root: Path, history: History) -> None:
        swarm(root)
        make_agent(root, "Agent-S1", b'{"current_tasks": ["a", ')
        outcome = reassign(root, "Agent-S1", history)
        assert not outcome.ok and "unreadable" in (outcome.error or "")
        assert all(messages(root, agent) == [] for agent in HEALTHY)

    @pytest.mark.parametrize("form", [TextForm("utf-8", bom=True, crlf=True),
                                      TextForm("utf-16-le", bom=True)], ids=TextForm.describe)
    def test_a_windows_file_hands_on_its_tasks_and_keeps_its_form(
        self, root: Path, history: History, form: TextForm
    ) -> None:
        """The tasks of a BOM or UTF-16 file really move (before: the file was "salvaged"
        by the first rung and reassignment reported ok while moving nothing)."""
        swarm(root)
        doc = {"agent_id": "Agent-S1", "status": "WORKING", "current_tasks": ["port it"]}
        make_agent(root, "Agent-S1", jsontext.dump(doc, form))
        outcome = reassign(root, "Agent-S1", history)
        assert outcome.ok and outcome.detail["tasks"] == 1
        text, written = jsontext.decode((root / "Agent-S1" / "status.json").read_bytes())
        after = json.loads(text)
        assert written == form and after["status"] == "WORKING"
        assert after["healer"]["reassigned_tasks"][0]["task"] == "port it"
