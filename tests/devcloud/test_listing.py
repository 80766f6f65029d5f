"""GET /api/v1/instances/ pages of at most 25 with next_token; the retired v0 list is 410."""


def test_pages_of_25_until_next_token_is_null(vast, cloud):
    cloud.faults(time_scale=0.01)
    offers = vast.search(rented={"eq": False}, limit=30)
    created = {vast.create(offer["id"], label=f"page-{n}") for n, offer in enumerate(offers)}
    assert len(created) == 30

    first = vast.call("GET", "/api/v1/instances/", params={"limit": 25}).json()
    assert len(first["instances"]) == 25 and first["total_instances"] == 30
    assert first["next_token"]
    second = vast.call("GET", "/api/v1/instances/", params={"limit": 25, "after_token": first["next_token"]}).json()
    assert len(second["instances"]) == 5 and second["next_token"] is None

    seen = [inst["id"] for inst in first["instances"] + second["instances"]]
    assert sorted(seen) == seen and set(seen) == created


def test_limit_is_capped_at_25_and_non_positive_means_5(vast, cloud):
    cloud.faults(time_scale=0.01)
    for offer in vast.search(rented={"eq": False}, limit=27):
        vast.create(offer["id"])
    assert len(vast.call("GET", "/api/v1/instances/", params={"limit": 100}).json()["instances"]) == 25
    assert len(vast.call("GET", "/api/v1/instances/", params={"limit": 0}).json()["instances"]) == 5
    assert len(vast.call("GET", "/api/v1/instances/").json()["instances"]) == 25


def test_bad_after_token_is_400(vast):
    reply = vast.call("GET", "/api/v1/instances/", params={"after_token": "garbage!"})
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_args"


def test_empty_account_lists_nothing(vast):
    body = vast.call("GET", "/api/v1/instances/").json()
    assert body["instances"] == [] and body["next_token"] is None and body["total_instances"] == 0


def test_retired_v0_list_is_410(vast):
    reply = vast.call("GET", "/api/v0/instances/")
    assert reply.status_code == 410
    assert reply.json() == {"success": False, "error": "gone", "msg": "use /api/v1/instances/"}


def test_instance_object_carries_what_clients_read(vast):
    instance = vast.wait_status(vast.create(label="fields"), "running")
    for field in (
        "id",
        "label",
        "actual_status",
        "intended_status",
        "cur_state",
        "status_msg",
        "ssh_host",
        "ssh_port",
        "public_ipaddr",
        "ports",
        "gpu_name",
        "num_gpus",
        "gpu_ram",
        "dph_total",
        "machine_id",
        "image_uuid",
        "disk_space",
        "start_date",
        "geolocation",
        "gpu_util",
    ):
        assert field in instance, field
    listed = vast.call("GET", "/api/v1/instances/").json()["instances"]
    assert [inst["label"] for inst in listed] == ["fields"]
