"""Activity classification: every row of SPEC §1."""

from __future__ import annotations

import pytest

from healer.adapters.beatfile import TEMP_SUFFIX
from healer.core.classify import classify
from healer.core.model import EventKind, Observation

C, M, D, MV, A, W = (
    EventKind.CREATED,
    EventKind.MODIFIED,
    EventKind.DELETED,
    EventKind.MOVED,
    EventKind.ATTRIB,
    EventKind.CLOSED_WRITE,
)


def agents(name: str) -> bool:
    return name.startswith("Agent-")


def one(relpath: str, kind: EventKind, dest: str | None = None, mode: str = "consume") -> bool:
    result = classify(relpath, kind, dest=dest, inbox_mode=mode, is_agent=agents)
    assert len(result) == 1
    return result[0].activity


class TestClassify:
    @pytest.mark.parametrize("kind", [C, M, D, A, W])
    def test_any_write_to_status_json_is_activity(self, kind: EventKind) -> None:
        assert one("Agent-1/status.json", kind)

    @pytest.mark.parametrize(
        ("src", "why"),
        [
            ("Agent-1/.status.json.tmp123", "atomic replace by a temp file"),
            ("Agent-1/sedAb12Cd", "sed -i"),
            ("Agent-1/.status.json.swp", "an editor's swap-and-rename"),
        ],
    )
    def test_a_rename_onto_status_json_is_activity(self, src: str, why: str) -> None:
        assert one(src, MV, dest="Agent-1/status.json"), why

    @pytest.mark.parametrize("kind", [C, M, D, A, W])
    def test_any_write_to_heartbeat_json_is_activity(self, kind: EventKind) -> None:
        """SPEC §12: heartbeat.json is the agent's own file, whatever it holds."""
        assert one("Agent-1/heartbeat.json", kind)

    def test_healer_beats_rename_into_place_is_the_agents_activity(self) -> None:
        """`healer beat` writes for the agent: its temp name does not carry healer's marker,
        so the rename is seen, and the temp file alone is not activity."""
        tmp = f"Agent-1/.heartbeat.json.ab12cd34ef56{TEMP_SUFFIX}"
        assert one(tmp, MV, dest="Agent-1/heartbeat.json")
        assert not one(tmp, C)

    def test_a_heartbeat_json_elsewhere_is_only_what_its_place_makes_it(self) -> None:
        assert not one("Agent-1/notes/heartbeat.json", M)
        assert not one("Agent-1/inbox/heartbeat.json", C)
        assert classify("heartbeat.json", M, is_agent=agents) == ()

    @pytest.mark.parametrize("kind", [C, M, D, A, W])
    def test_an_event_of_heartbeat_json_is_marked_a_beat(self, kind: EventKind) -> None:
        """The daemon reads heartbeat.json only on the events the classifier marks."""
        assert classify("Agent-1/heartbeat.json", kind, is_agent=agents) == (
            Observation("Agent-1", True, beat=True),)

    def test_a_rename_onto_or_off_heartbeat_json_is_a_beat_and_nothing_else_is(self) -> None:
        tmp = f"Agent-1/.heartbeat.json.ab12cd34ef56{TEMP_SUFFIX}"
        assert classify(tmp, MV, dest="Agent-1/heartbeat.json", is_agent=agents)[0].beat
        assert classify("Agent-1/heartbeat.json", MV, dest="Agent-1/old.json",
                        is_agent=agents)[0].beat
        assert not classify(tmp, C, is_agent=agents)[0].beat
        for path in ("Agent-1/status.json", "Agent-1/devlogs/heartbeat.json",
                     "Agent-1/inbox/heartbeat.json"):
            assert not classify(path, M, is_agent=agents)[0].beat, path
        # Across agents each side is its own: only the side that is a heartbeat.json beats.
        moved = classify("Agent-1/heartbeat.json", MV, dest="Agent-2/devlogs/hb.json",
                         is_agent=agents)
        assert [(o.agent, o.beat) for o in moved] == [("Agent-1", True), ("Agent-2", False)]

    @pytest.mark.parametrize("kind", [C, M, D, W, A])
    def test_devlog_writes_at_any_depth_are_activity(self, kind: EventKind) -> None:
        assert one("Agent-1/devlogs/2025/session.md", kind)
        assert one("Agent-1/devlogs", kind)

    @pytest.mark.parametrize("kind", [C, M, W])
    def test_new_mail_in_the_inbox_is_not_the_agents_activity(self, kind: EventKind) -> None:
        assert not one("Agent-1/inbox/C2A_BATCH_5.md", kind)

    def test_a_sender_renaming_its_temp_file_into_the_inbox_is_delivery(self) -> None:
        assert not one("Agent-1/inbox/.msg.tmp", MV, dest="Agent-1/inbox/msg.md")

    def test_mail_moved_in_from_outside_the_inbox_is_delivery(self) -> None:
        assert not one("Agent-4/outbox/msg.md", MV, dest="Agent-4/inbox/msg.md")

    def test_deleting_a_message_is_consuming_it(self) -> None:
        assert one("Agent-1/inbox/C2A_BATCH_5.md", D)

    def test_moving_a_message_into_processed_is_consuming_it(self) -> None:
        assert one("Agent-1/inbox/msg.md", MV, dest="Agent-1/inbox/processed/msg.md")

    def test_moving_a_message_into_an_archive_folder_is_consuming_it(self) -> None:
        assert one("Agent-1/inbox/msg.md", MV, dest="Agent-1/inbox/archive_2025/msg.md")

    def test_moving_a_message_out_of_the_workspace_is_consuming_it(self) -> None:
        result = classify("Agent-1/inbox/msg.md", MV, dest="elsewhere/msg.md", is_agent=agents)
        assert result == (Observation("Agent-1", True),)

    def test_inbox_mode_any_counts_new_mail(self) -> None:
        assert one("Agent-1/inbox/msg.md", C, mode="any")

    def test_inbox_mode_none_ignores_consumption(self) -> None:
        assert not one("Agent-1/inbox/msg.md", D, mode="none")

    @pytest.mark.parametrize(
        "path",
        [
            "Agent-1/.ESCALATION_REQUIRED",
            "Agent-1/status.json.bak.20250101T000000Z",
            "Agent-1/notes.md",
            "Agent-1/status.json/inner",
        ],
    )
    def test_other_files_in_the_agent_folder_are_not_activity(self, path: str) -> None:
        assert not one(path, C)

    def test_healers_own_temp_files_are_not_observed(self) -> None:
        assert classify("Agent-1/.status.json.healer-tmp.ab12", C, is_agent=agents) == ()
        assert classify("Agent-1/.status.json.healer-tmp.ab12", D, is_agent=agents) == ()

    def test_healers_rename_into_place_is_not_observed(self) -> None:
        moved = classify(
            "Agent-1/.status.json.healer-tmp.ab12", MV, dest="Agent-1/status.json", is_agent=agents
        )
        assert moved == ()
        rescue = classify(
            "Agent-1/inbox/.HEALER_RESCUE_1.md.healer-tmp.x", MV,
            dest="Agent-1/inbox/HEALER_RESCUE_1.md", is_agent=agents,
        )
        assert rescue == ()

    def test_an_exchange_of_status_json_with_a_healer_temp_file_is_not_observed(self) -> None:
        swapped = classify(
            "Agent-1/status.json", MV, dest="Agent-1/.status.json.healer-tmp.ab12", is_agent=agents
        )
        assert swapped == ()

    def test_paths_outside_agent_folders_are_ignored(self) -> None:
        assert classify(".healer/healer.db", M, is_agent=agents) == ()
        assert classify("README.md", M, is_agent=agents) == ()
        assert classify("", M, is_agent=agents) == ()

    def test_the_agent_folder_itself_is_observed_but_not_as_activity(self) -> None:
        assert classify("Agent-9", C, is_agent=agents) == (Observation("Agent-9", False),)

    def test_a_rename_between_two_agents_touches_both(self) -> None:
        result = classify(
            "Agent-1/devlogs/a.md", MV, dest="Agent-2/devlogs/a.md", is_agent=agents
        )
        assert result == (Observation("Agent-1", True), Observation("Agent-2", True))

    def test_odd_agent_names_are_classified_by_their_first_component(self) -> None:
        odd = "Agent-ü 1"
        assert classify(f"{odd}/status.json", M, is_agent=agents) == (Observation(odd, True),)
