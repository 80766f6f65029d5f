"""Commands without the HTTP around them: the journal that keeps a command from running twice,
the outbox of updates, and what each kind answers."""

from __future__ import annotations

import json

from agent import wire
from agent.commands import HANDLERS, JOURNAL_SIZE, CommandRunner, Journal, Outbox

from .helpers import wait_for


def finals(runner: CommandRunner) -> dict[str, wire.CommandUpdate]:
    updates = runner.outbox.take(1000)
    runner.outbox.undelivered()
    return {u.id: u for u in updates if u.status in ("succeeded", "failed")}


def run_to_end(runner: CommandRunner, *commands: wire.Command) -> dict[str, wire.CommandUpdate]:
    runner.receive(list(commands))
    ids = {command.id for command in commands}
    return wait_for(lambda: (done := finals(runner)).keys() >= ids and done, what=f"commands {ids} to finish")


def test_echo_answers_its_arguments(tmp_path):
    runner = CommandRunner(Journal(tmp_path / "journal.json"))
    done = run_to_end(runner, wire.Command(id="1", kind="echo", args={"hello": "world"}))

    assert done["1"].result == {"hello": "world"}
    assert [u.status for u in runner.outbox.take(10)] == ["acknowledged", "running", "succeeded"]


def test_a_crashing_handler_fails_its_command_not_the_agent(tmp_path):
    def broken(command, progress):
        raise ValueError("disk on fire")

    runner = CommandRunner(Journal(tmp_path / "journal.json"), {**HANDLERS, "echo": broken})
    done = run_to_end(runner, wire.Command(id="1", kind="echo"), wire.Command(id="2", kind="stop_agent"))

    assert (done["1"].status, done["1"].error) == ("failed", "ValueError: disk on fire")
    assert done["2"].status == "succeeded"


def test_the_same_id_twice_in_one_run_is_acknowledged_and_run_once(tmp_path):
    runs = []
    runner = CommandRunner(
        Journal(tmp_path / "journal.json"), {"echo": lambda command, progress: runs.append(command.id) or {}}
    )
    command = wire.Command(id="1", kind="echo")
    runner.receive([command, command])
    run_to_end(runner, command)

    assert runs == ["1"]
    assert [u.status for u in runner.outbox.take(10)].count("acknowledged") == 1


def test_after_a_restart_a_finished_command_sends_its_stored_result_instead_of_running(tmp_path):
    journal_path = tmp_path / "journal.json"
    run_to_end(CommandRunner(Journal(journal_path)), wire.Command(id="1", kind="echo", args={"n": 1}))

    runs = []
    restarted = CommandRunner(Journal(journal_path), {"echo": lambda command, progress: runs.append(1) or {}})
    restarted.receive([wire.Command(id="1", kind="echo", args={"n": 1})])

    assert runs == []
    assert [(u.status, u.result) for u in restarted.outbox.take(10)] == [("succeeded", {"n": 1})]


def test_a_command_cut_short_by_a_restart_is_reported_failed_not_run_again(tmp_path):
    journal_path = tmp_path / "journal.json"
    Journal(journal_path).started("1")  # the agent died while it ran

    runner = CommandRunner(Journal(journal_path), {"echo": lambda command, progress: {"ran": True}})
    runner.receive([wire.Command(id="1", kind="echo")])

    [update] = runner.outbox.take(10)
    assert update.status == "failed"
    assert update.error == "the agent stopped while running this command; it is not run twice"
    assert Journal(journal_path).final("1") == update


def test_the_journal_keeps_the_newest_ids_and_survives_a_corrupt_file(tmp_path, caplog):
    journal = Journal(tmp_path / "journal.json")
    for number in range(JOURNAL_SIZE + 3):
        journal.finished(wire.CommandUpdate(id=str(number), status="succeeded", result={}))

    entries = json.loads((tmp_path / "journal.json").read_text())
    assert len(entries) == JOURNAL_SIZE
    assert "0" not in entries and str(JOURNAL_SIZE + 2) in entries

    (tmp_path / "journal.json").write_text("{not json")
    assert not Journal(tmp_path / "journal.json").seen("3")
    assert "is unreadable" in caplog.text


def test_a_journal_that_cannot_be_written_still_keeps_commands_from_running_twice(tmp_path, caplog):
    runs = []
    journal = Journal(tmp_path / "no-such-dir" / "journal.json")
    runner = CommandRunner(journal, {"echo": lambda command, progress: runs.append(1) or {}})
    command = wire.Command(id="1", kind="echo")

    run_to_end(runner, command)
    runner.receive([command])

    assert runs == [1]
    assert "a restart could run command 1 again" in caplog.text


def test_the_outbox_keeps_updates_until_a_heartbeat_carrying_them_is_answered():
    outbox = Outbox()
    outbox.put(wire.CommandUpdate(id="1", status="acknowledged"))
    outbox.put(wire.CommandUpdate(id="1", status="running"))

    assert len(outbox.take(10)) == 2
    outbox.undelivered()  # that heartbeat failed
    assert len(outbox.take(1)) == 1
    outbox.delivered()
    assert [u.status for u in outbox.take(10)] == ["running"]


def test_only_the_newest_progress_waits_but_one_already_sent_is_left_alone():
    outbox = Outbox()
    outbox.put(wire.CommandUpdate(id="1", status="running", progress={"step": 1}))
    in_flight = outbox.take(10)
    outbox.put(wire.CommandUpdate(id="1", status="running", progress={"step": 2}))
    outbox.put(wire.CommandUpdate(id="1", status="running", progress={"step": 3}))

    outbox.delivered()
    assert [u.progress for u in in_flight] == [{"step": 1}]
    assert [u.progress for u in outbox.take(10)] == [{"step": 3}]
