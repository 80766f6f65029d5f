"""The knobs races need: a share of machines that never become ready, per-machine profiles, a
bigger catalog."""

import time

import pytest

from devcloud.catalog import generate_offers
from devcloud.delays import BootClock
from devcloud.faults import MACHINE_FLAGS, Faults


def test_fail_rate_gives_that_share_of_new_machines_one_fault():
    faults = Faults(BootClock("fixed:1", 1.0, seed=1), fail_rate=0.1, seed=7)
    drawn = [faults.for_new_machine().flags() for _ in range(2000)]
    unlucky = [flags for flags in drawn if flags]
    assert 150 < len(unlucky) < 250
    assert all(len(flags) == 1 for flags in unlucky)
    assert {flags[0] for flags in unlucky} == set(MACHINE_FLAGS)


def test_fail_rate_knob_reads_merges_and_resets(cloud, vast):
    assert cloud.reset_faults()["fail_rate"] == 0.0  # devcloud.testing starts without failures
    cloud.faults(fail_rate=1.0)
    machine = vast.create()
    assert len(cloud.machine(machine)["faults"]) == 1
    assert cloud.reset_faults()["fail_rate"] == 0.0
    status, body = cloud.api("POST", "/_devcloud/faults", {"fail_rate": 1.5})
    assert status == 400 and "fail_rate" in body["msg"]


def test_machine_profiles_apply_in_creation_order(cloud, vast):
    cloud.faults(machine_profiles=[{"boot_delay_s": 0.6, "oci_error": True}, {"boot_delay_s": 0.05}])
    assert len(cloud.faults()["machine_profiles"]) == 2
    slow, fast = vast.create(), vast.create()
    vast.wait_status(fast, "running", timeout=2)
    assert vast.instance(slow)["actual_status"] in (None, "loading")
    failed = vast.wait_status(slow, "created", timeout=3)
    assert "OCI runtime create failed" in failed["status_msg"]
    assert cloud.faults()["machine_profiles"] == []


def test_a_profile_create_delay_holds_the_reply_and_the_machine(cloud, vast):
    cloud.faults(machine_profiles=[{"create_delay_s": 0.5}])
    started = time.monotonic()
    machine = vast.create()
    assert time.monotonic() - started >= 0.5
    assert vast.instance(machine) is not None


@pytest.mark.parametrize(
    "profiles", [{"boot_delay_s": 1}, [{"boot_delay_s": -1}], [{"stuck_loading": 1}], [{"no_such": True}], ["x"]]
)
def test_bad_profiles_are_400(cloud, vast, profiles):
    status, body = cloud.api("POST", "/_devcloud/faults", {"machine_profiles": profiles})
    assert status == 400 and body["error"] == "invalid_args"


def test_a_bigger_catalog_has_more_of_each_gpu_on_distinct_hosts():
    default = generate_offers(1)
    bigger = generate_offers(1, 400)
    assert len(default) == 40 and len(bigger) == 400
    assert len({o["machine_id"] for o in bigger}) == 400 and len({o["id"] for o in bigger}) == 400
    rtx_4090 = [o for o in bigger if o["gpu_name"] == "RTX 4090" and o["num_gpus"] == 1]
    assert len(rtx_4090) > len([o for o in default if o["gpu_name"] == "RTX 4090" and o["num_gpus"] == 1])
