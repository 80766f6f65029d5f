"""The main loop against a fake control plane over real HTTP: heartbeats, backoff and replay,
token rejection, protection, the interval the control plane sets, and commands."""

from __future__ import annotations

import logging
import threading

import pytest

from agent import wire
from agent.client import ControlPlane
from agent.commands import HANDLERS, CommandRunner, Journal
from agent.protect import protect_workspace
from agent.runner import EXIT_PROTECTED, EXIT_STOPPED, EXIT_TOKEN_REJECTED, Backoff, Runner, Timing

from .helpers import TOKEN, FakeTime, ScenarioOver, sleep_until_deadline


class CountingSampler:
    """Samples stamped with the (fake) clock, so their order can be checked on arrival."""

    def __init__(self, clock):
        self.clock = clock
        self.taken: list[float] = []

    def __call__(self) -> wire.Sample:
        self.taken.append(self.clock())
        return wire.Sample(at=self.clock())


class RecordingControlPlane(ControlPlane):
    """The real client, noting the time and outcome of every attempt."""

    def __init__(self, url: str, clock):
        super().__init__(url, TOKEN, timeout_s=2)
        self.clock = clock
        self.attempts: list[tuple[float, bool]] = []

    def post_heartbeat(self, heartbeat):
        try:
            reply = super().post_heartbeat(heartbeat)
        except Exception:
            self.attempts.append((self.clock(), False))
            raise
        self.attempts.append((self.clock(), True))
        return reply


def make_runner(
    tmp_path, url, *, clock, sleep, interval_s=1.0, protect_after_s=1e6, protect=lambda: None, handlers=None,
    **kwargs,
):
    return Runner(
        instance_id="inst-1",
        control_plane=RecordingControlPlane(url, clock),
        sampler=CountingSampler(clock),
        commands=CommandRunner(Journal(tmp_path / "commands.json"), handlers),
        timing=Timing(
            interval_s=interval_s, protect_after_s=protect_after_s, clock=clock, sleep=sleep, jitter=lambda: 1.0
        ),
        protect=protect,
        **kwargs,
    )


def fake_runner(tmp_path, control_plane, fake_time: FakeTime, **kwargs) -> Runner:
    control_plane.interval_s = kwargs.get("interval_s", 1.0)
    return make_runner(tmp_path, control_plane.url, clock=fake_time.clock, sleep=fake_time.sleep, **kwargs)


def run_scenario(runner: Runner) -> None:
    with pytest.raises(ScenarioOver):
        runner.run()


def test_a_heartbeat_goes_out_at_start_then_one_per_interval_with_its_sample(tmp_path, control_plane, fake_time):
    runner = fake_runner(tmp_path, control_plane, fake_time)
    fake_time.stop_at(4.5)
    run_scenario(runner)

    assert [(a - fake_time.start, ok) for a, ok in runner.control_plane.attempts] == [
        (0, True), (1, True), (2, True), (3, True), (4, True)
    ]
    beats = control_plane.heartbeats
    assert [len(beat.samples) for beat in beats] == [0, 1, 1, 1, 1]  # the first says "I am up"
    assert [beat.seq for beat in beats] == [1, 2, 3, 4, 5]
    assert {(beat.instance_id, beat.agent_version) for beat in beats} == {("inst-1", "0.1.0")}
    assert [sample.at for sample in control_plane.samples()] == runner.sampler.taken


@pytest.mark.parametrize("outage", ["refused", "503"])
def test_outage_backs_off_exponentially_then_replays_every_sample_in_order(
    tmp_path, control_plane, fake_time, outage, caplog
):
    caplog.set_level(logging.INFO, "dumont.agent")
    runner = fake_runner(tmp_path, control_plane, fake_time, samples_per_heartbeat=10)
    if outage == "refused":
        fake_time.at(3.5, control_plane.refuse)
        fake_time.at(40, control_plane.accept)
    else:
        fake_time.at(3.5, lambda: setattr(control_plane, "status", 503))
        fake_time.at(40, lambda: setattr(control_plane, "status", 200))
    fake_time.stop_at(70.5)
    run_scenario(runner)

    attempts = runner.control_plane.attempts
    first_failure = next(position for position, (_, ok) in enumerate(attempts) if not ok)
    outage_attempts = [at for at, _ in attempts[first_failure:first_failure + 7]]
    delays = [later - earlier for earlier, later in zip(outage_attempts, outage_attempts[1:])]
    assert delays == [1, 2, 4, 8, 16, 32]  # jitter pinned at 1: the top of each range
    assert [ok for _, ok in attempts[first_failure:first_failure + 7]] == [False] * 6 + [True]

    assert [sample.at for sample in control_plane.samples()] == runner.sampler.taken  # none lost, in order
    seqs = [beat.seq for beat in control_plane.heartbeats]
    assert seqs == sorted(set(seqs))
    replay = [beat for beat in control_plane.heartbeats if len(beat.samples) == 10]
    assert len(replay) == 6  # 64 buffered samples went out 10 per heartbeat, then the last 4
    reason = "ConnectionRefused" if outage == "refused" else "HTTP 503"
    assert f"control plane unreachable ({reason}" in caplog.text
    assert "retrying in 32.0 s; 32 samples buffered" in caplog.text
    assert "control plane reachable again after 6 failed attempts; delivered 64 buffered samples" in caplog.text


def test_a_full_buffer_drops_the_oldest_samples_and_says_so(tmp_path, control_plane, fake_time, caplog):
    runner = fake_runner(tmp_path, control_plane, fake_time, buffer_size=5)
    fake_time.at(2.5, control_plane.refuse)
    fake_time.at(20, control_plane.accept)
    fake_time.stop_at(36.5)
    run_scenario(runner)

    taken, received = runner.sampler.taken, [sample.at for sample in control_plane.samples()]
    recovered_at = next(at for at, ok in reversed(runner.control_plane.attempts) if not ok) + 16
    newest_five_then = [at for at in taken if at <= recovered_at][-5:]
    assert received == taken[:2] + newest_five_then + [at for at in taken if at > recovered_at]
    assert "sample buffer full (5 samples): dropped the oldest" in caplog.text


def test_a_rejected_token_stops_the_agent_at_once(tmp_path, control_plane, fake_time, caplog):
    runner = fake_runner(tmp_path, control_plane, fake_time)
    control_plane.status = 401

    assert runner.run() == EXIT_TOKEN_REJECTED
    assert len(runner.control_plane.attempts) == 1
    assert "control plane rejected this agent's token (HTTP 401" in caplog.text


def test_out_of_reach_past_the_window_protects_the_workspace_and_exits(tmp_path, control_plane, fake_time, caplog):
    protected = []

    def protect():
        protected.append(fake_time.elapsed())
        protect_workspace({"DUMONT_WORKSPACE": str(tmp_path / "gone")})

    runner = fake_runner(tmp_path, control_plane, fake_time, protect_after_s=5, protect=protect)
    control_plane.refuse()

    assert runner.run() == EXIT_PROTECTED
    assert protected == [5]  # the backoff is cut short to meet the window
    assert "control plane unreachable for 5.0 s (ConnectionRefused), the limit is 5 s" in caplog.text
    assert f"cannot protect {tmp_path / 'gone'}: no such directory" in caplog.text


def test_contact_restarts_the_protection_window(tmp_path, control_plane, fake_time):
    runner = fake_runner(tmp_path, control_plane, fake_time, protect_after_s=5)
    for start in (2.5, 10.5, 18.5):  # three outages of 4 s each: none reaches the window
        fake_time.at(start, control_plane.refuse)
        fake_time.at(start + 4, control_plane.accept)
    fake_time.stop_at(30)

    run_scenario(runner)  # rather than returning EXIT_PROTECTED


def test_the_interval_the_control_plane_sets_is_honoured(tmp_path, control_plane, fake_time, caplog):
    caplog.set_level(logging.INFO, "dumont.agent")
    runner = fake_runner(tmp_path, control_plane, fake_time)
    control_plane.interval_s = 2.0
    fake_time.stop_at(9)
    run_scenario(runner)

    taken = runner.sampler.taken
    assert [later - earlier for earlier, later in zip(taken, taken[1:])] == [2, 2, 2]
    assert "control plane set the interval to 2 s (was 1 s)" in caplog.text


def test_backoff_draws_each_delay_under_a_doubling_ceiling_capped_at_a_minute():
    draws = iter([0.5, 0.25, 1.0, 1.0, 1.0, 0.1, 1.0])
    backoff = Backoff(base_s=10, jitter=lambda: next(draws))

    assert [backoff.next_delay() for _ in range(6)] == [5, 5, 40, 60, 60, 6]  # ceilings 10, 20, 40, 60...
    backoff.reset()
    assert backoff.next_delay() == 10


def real_time_runner(tmp_path, control_plane, **kwargs) -> Runner:
    import time

    return make_runner(
        tmp_path, control_plane.url, clock=time.monotonic, sleep=sleep_until_deadline(10), interval_s=0.05, **kwargs
    )


def test_a_command_delivered_twice_runs_once_and_its_updates_arrive(tmp_path, control_plane):
    runs = []

    def counting_echo(command, progress):
        runs.append(command.id)
        return command.args

    control_plane.deliver("echo", {"x": 1}, id="c1", times=2)  # re-delivered although acknowledged
    control_plane.deliver("stop_agent", id="s1")
    runner = real_time_runner(tmp_path, control_plane, handlers={**HANDLERS, "echo": counting_echo})

    assert runner.run() == EXIT_STOPPED
    assert runs == ["c1"]
    statuses = control_plane.statuses("c1")
    assert statuses[:3] == ["acknowledged", "running", "succeeded"]
    assert set(statuses[3:]) <= {"succeeded"}  # the stored result, sent again for the re-delivery
    assert {update.result["x"] for update in control_plane.updates("c1") if update.status == "succeeded"} == {1}
    assert control_plane.statuses("s1") == ["acknowledged", "running", "succeeded"]
    assert not runner.commands.outbox  # it left only once every update was delivered


def test_heartbeats_go_on_while_a_long_command_runs(tmp_path, control_plane):
    control_plane.deliver("echo", {"delay_s": 0.4}, id="slow")
    control_plane.deliver("stop_agent", id="stop")
    runner = real_time_runner(tmp_path, control_plane)

    assert runner.run() == EXIT_STOPPED
    beats = control_plane.heartbeats
    acknowledged = next(n for n, beat in enumerate(beats) if any(u.id == "slow" for u in beat.updates))
    succeeded = next(
        n for n, beat in enumerate(beats) if any(u.id == "slow" and u.status == "succeeded" for u in beat.updates)
    )
    assert succeeded - acknowledged >= 4  # 0.4 s at 0.05 s a heartbeat, with samples
    assert all(beat.samples for beat in beats[acknowledged + 1:succeeded])
    progress = [u.progress for u in control_plane.updates("slow") if u.progress]
    assert progress and progress[-1] == {"step": 4, "steps": 4}


def test_snapshot_commands_without_settings_and_unknown_commands_fail_with_a_clear_error(tmp_path, control_plane,
                                                                                       monkeypatch):
    monkeypatch.delenv("DUMONT_S3_ENDPOINT", raising=False)
    control_plane.deliver("snapshot", id="snap")
    control_plane.deliver("restore", {"snapshot": "s"}, id="rest")
    control_plane.deliver("reboot", id="boot")
    control_plane.deliver("stop_agent", id="stop")
    runner = real_time_runner(tmp_path, control_plane)

    assert runner.run() == EXIT_STOPPED
    errors = {
        command_id: [u.error for u in control_plane.updates(command_id) if u.status == "failed"]
        for command_id in ("snap", "rest", "boot")
    }
    missing = "DUMONT_S3_ENDPOINT, DUMONT_S3_BUCKET, DUMONT_S3_ACCESS_KEY, DUMONT_S3_SECRET_KEY, DUMONT_SNAPSHOT_KEY"
    assert errors["snap"] == errors["rest"] == [f"snapshot settings: missing settings: {missing}"]
    assert errors["boot"] == ["unknown command kind 'reboot'; this agent runs echo, restore, snapshot, stop_agent"]


def test_a_stop_is_not_taken_before_its_result_is_delivered(tmp_path, control_plane):
    """Refused for a while after stop_agent ran: the agent keeps trying until it reports."""
    done = threading.Event()

    def stop_then_outage(command, progress):
        control_plane.refuse()
        threading.Timer(0.3, lambda: (control_plane.accept(), done.set())).start()
        return {"stopping": True}

    control_plane.deliver("stop_agent", id="stop")
    runner = real_time_runner(tmp_path, control_plane, handlers={**HANDLERS, "stop_agent": stop_then_outage})

    assert runner.run() == EXIT_STOPPED
    assert done.is_set()
    assert control_plane.statuses("stop")[-1] == "succeeded"
