import pytest

from apps.instances import services
from apps.instances.models import Instance, InstanceEvent, InstanceStatus
from dumont.errors import IllegalTransition, InvalidInput

S = InstanceStatus


def make_instance(user, status=S.RUNNING, **fields):
    return Instance.objects.create(user=user, label="box", image="img", status=status, **fields)


def test_create_records_requested_instance_with_event(user):
    instance = services.instance_create(
        user=user, actor="user:alice", label="train", image="img", disk_gb=32, gpu_name="RTX 4090"
    )
    assert instance.status == S.REQUESTED
    event = instance.events.get()
    assert (event.from_status, event.to_status, event.actor) == ("", S.REQUESTED, "user:alice")


def test_create_needs_exactly_one_of_offer_or_gpu_spec(user):
    with pytest.raises(InvalidInput, match="either offer_id or gpu_name"):
        services.instance_create(user=user, actor="t", label="x", image="i", disk_gb=32)
    with pytest.raises(InvalidInput, match="not both"):
        services.instance_create(
            user=user, actor="t", label="x", image="i", disk_gb=32, gpu_name="RTX 4090", offer_id="7"
        )
    assert not Instance.objects.exists()


def test_pause_moves_running_to_stopping_and_logs_the_actor(user):
    instance = make_instance(user)
    paused = services.instance_pause(instance=instance, actor="user:alice")
    assert paused.status == S.STOPPING
    assert paused.deadline_at is not None
    event = InstanceEvent.objects.get(instance=instance)
    assert (event.from_status, event.to_status, event.actor) == (S.RUNNING, S.STOPPING, "user:alice")


@pytest.mark.parametrize("status", [S.REQUESTED, S.BOOTING, S.PAUSED, S.STOPPING, S.DESTROYED, S.FAILED])
def test_pause_is_illegal_unless_running(user, status):
    instance = make_instance(user, status=status)
    with pytest.raises(IllegalTransition) as excinfo:
        services.instance_pause(instance=instance, actor="user:alice")
    assert excinfo.value.extra["status"] == status
    instance.refresh_from_db()
    assert instance.status == status
    assert not instance.events.exists()


@pytest.mark.parametrize("status", [S.RUNNING, S.BOOTING, S.STOPPING, S.FAILED])
def test_resume_is_illegal_unless_paused(user, status):
    instance = make_instance(user, status=status)
    with pytest.raises(IllegalTransition):
        services.instance_resume(instance=instance, actor="user:alice")


def test_resume_moves_paused_to_waking(user):
    instance = make_instance(user, status=S.PAUSED)
    assert services.instance_resume(instance=instance, actor="user:alice").status == S.WAKING


def test_destroy_from_any_live_state_and_twice_is_harmless(user):
    for status in [S.REQUESTED, S.PROVISIONING, S.BOOTING, S.RUNNING, S.PAUSED, S.FAILED]:
        instance = make_instance(user, status=status)
        assert services.instance_destroy(instance=instance, actor="t").status == S.DESTROYING
        again = services.instance_destroy(instance=instance, actor="t")
        assert again.status == S.DESTROYING
        assert instance.events.count() == 1


def test_destroy_of_destroyed_instance_is_illegal(user):
    instance = make_instance(user, status=S.DESTROYED)
    with pytest.raises(IllegalTransition, match="destroyed"):
        services.instance_destroy(instance=instance, actor="t")


def test_results_arriving_for_a_moved_on_instance_are_refused(user):
    instance = make_instance(user, status=S.DESTROYING)
    with pytest.raises(IllegalTransition):
        services.instance_record_machine(instance_id=instance.id, machine_id="42")
    instance.refresh_from_db()
    assert instance.machine_id == ""


def test_transition_and_its_event_commit_together(user, monkeypatch):
    instance = make_instance(user)

    def broken_save(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(InstanceEvent, "save", broken_save)
    with pytest.raises(RuntimeError):
        services.instance_pause(instance=instance, actor="t")
    instance.refresh_from_db()
    assert instance.status == S.RUNNING
