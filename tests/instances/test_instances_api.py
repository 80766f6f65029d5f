from datetime import timedelta

import pytest
from django.utils import timezone

from apps.instances.idempotency import idempotency_records_purge
from apps.instances.models import IdempotencyRecord, Instance, InstanceStatus

S = InstanceStatus
CREATE = {"label": "train", "gpu_name": "RTX 4090", "disk_gb": 40}


def make_instance(user, status=S.RUNNING):
    return Instance.objects.create(user=user, label="box", image="img", status=status, gpu_name="RTX 4090")


def instance_urls(instance_id):
    base = f"/api/v1/instances/{instance_id}"
    return [("get", base), ("delete", base), ("post", f"{base}/pause"), ("post", f"{base}/resume")]


# --- auth ---------------------------------------------------------------------------------------


def test_login_returns_access_and_refresh_tokens_that_work(anon_api, user):
    tokens = anon_api.post(
        "/api/v1/auth/login", {"username": "alice", "password": "correct horse battery"}, format="json"
    ).json()
    assert set(tokens) >= {"access", "refresh"}
    refreshed = anon_api.post("/api/v1/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200
    anon_api.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    assert anon_api.get("/api/v1/instances").status_code == 200


def test_login_with_wrong_password_is_401_with_error_body(anon_api, user):
    response = anon_api.post("/api/v1/auth/login", {"username": "alice", "password": "nope"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_login_without_fields_is_400(anon_api, db):
    response = anon_api.post("/api/v1/auth/login", {}, format="json")
    assert response.status_code == 400
    assert "username" in response.json()["detail"]


def test_refresh_with_garbage_is_401(anon_api, db):
    assert anon_api.post("/api/v1/auth/refresh", {"refresh": "x.y.z"}, format="json").status_code == 401


def test_every_instance_endpoint_needs_a_jwt(anon_api, user):
    instance = make_instance(user)
    calls = [("get", "/api/v1/instances"), ("post", "/api/v1/instances")] + instance_urls(instance.id)
    for method, url in calls:
        response = getattr(anon_api, method)(url, format="json")
        assert response.status_code == 401, (method, url)
        assert response.json()["error"] == "not_authenticated"


def test_a_session_login_does_not_open_the_api(client, user):
    client.force_login(user)
    assert client.get("/api/v1/instances").status_code == 401


# --- isolation -----------------------------------------------------------------------------------


def test_other_users_instances_are_404_everywhere(other_api, user):
    instance = make_instance(user)
    for method, url in instance_urls(instance.id):
        response = getattr(other_api, method)(url, format="json")
        assert response.status_code == 404, (method, url)
        assert response.json() == {"error": "not_found", "detail": "no such instance"}
    instance.refresh_from_db()
    assert instance.status == S.RUNNING


def test_list_shows_only_own_instances(api, other_user, user):
    mine = make_instance(user)
    make_instance(other_user)
    ids = [row["id"] for row in api.get("/api/v1/instances").json()["results"]]
    assert ids == [str(mine.id)]


def test_malformed_and_unknown_ids_are_404(api):
    assert api.get("/api/v1/instances/not-a-uuid").status_code == 404
    assert api.get("/api/v1/instances/00000000-0000-0000-0000-000000000000").status_code == 404


# --- create ----------------------------------------------------------------------------------------


def test_create_answers_202_with_a_requested_instance(api, user):
    response = api.post("/api/v1/instances", CREATE, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "requested"
    assert body["machine_label"] == f"dumont-{body['id']}"
    assert Instance.objects.get(pk=body["id"]).user == user


@pytest.mark.parametrize(
    "payload, words",
    [
        ({"gpu_name": "RTX 4090"}, "label"),
        ({"label": "x"}, "either offer_id or gpu_name"),
        ({"label": "x", "gpu_name": "RTX 4090", "offer_id": "12"}, "not both"),
        ({"label": "x", "gpu_name": "RTX 4090", "disk_gb": 4}, "disk_gb"),
        ({"label": "x", "gpu_name": "RTX 4090", "num_gpus": 0}, "num_gpus"),
        ({"label": "x", "gpu_name": "RTX 4090", "max_price_per_hour": "-1"}, "max_price_per_hour"),
        ({"label": "x", "offer_id": "12; rm -rf /"}, "offer_id"),
    ],
)
def test_create_with_bad_input_is_400_with_a_message(api, payload, words):
    response = api.post("/api/v1/instances", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert words in response.json()["detail"]
    assert not Instance.objects.exists()


def test_create_with_non_json_body_is_400(api):
    response = api.generic("POST", "/api/v1/instances", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


def test_idempotency_key_replays_the_first_response(api):
    first = api.post("/api/v1/instances", CREATE, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/api/v1/instances", CREATE, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Instance.objects.count() == 1


def test_idempotency_key_reused_with_another_body_is_409(api):
    api.post("/api/v1/instances", CREATE, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    response = api.post(
        "/api/v1/instances", {**CREATE, "label": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2"
    )
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_key_reused"
    assert Instance.objects.count() == 1


def test_idempotency_keys_are_per_user(api, other_api):
    a = api.post("/api/v1/instances", CREATE, format="json", HTTP_IDEMPOTENCY_KEY="same")
    b = other_api.post("/api/v1/instances", CREATE, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert a.json()["id"] != b.json()["id"]
    assert IdempotencyRecord.objects.count() == 2


def test_an_idempotency_key_is_free_again_once_its_record_expired(api, settings):
    first = api.post("/api/v1/instances", CREATE, format="json", HTTP_IDEMPOTENCY_KEY="k-3").json()
    expired = timezone.now() - timedelta(seconds=settings.DUMONT_IDEMPOTENCY_TTL + 1)
    IdempotencyRecord.objects.update(created_at=expired)
    again = api.post("/api/v1/instances", {**CREATE, "label": "next day"}, format="json",
                     HTTP_IDEMPOTENCY_KEY="k-3")
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first["id"] and IdempotencyRecord.objects.count() == 1


def test_the_beat_purges_expired_idempotency_records_only(api, settings):
    api.post("/api/v1/instances", CREATE, format="json", HTTP_IDEMPOTENCY_KEY="old")
    api.post("/api/v1/instances", CREATE, format="json", HTTP_IDEMPOTENCY_KEY="new")
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(seconds=settings.DUMONT_IDEMPOTENCY_TTL + 1))
    assert idempotency_records_purge() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


def test_create_without_idempotency_key_creates_each_time(api):
    api.post("/api/v1/instances", CREATE, format="json")
    api.post("/api/v1/instances", CREATE, format="json")
    assert Instance.objects.count() == 2


# --- list, detail ----------------------------------------------------------------------------------


def test_list_filters_by_status_and_rejects_unknown_status(api, user):
    running = make_instance(user, S.RUNNING)
    make_instance(user, S.PAUSED)
    rows = api.get("/api/v1/instances?status=running").json()["results"]
    assert [row["id"] for row in rows] == [str(running.id)]
    response = api.get("/api/v1/instances?status=sleeping")
    assert response.status_code == 400
    assert "sleeping" in response.json()["detail"]


def test_detail_includes_events(api, user):
    instance = make_instance(user)
    api.post(f"/api/v1/instances/{instance.id}/pause")
    events = api.get(f"/api/v1/instances/{instance.id}").json()["events"]
    assert [(e["from_status"], e["to_status"]) for e in events] == [("running", "stopping")]


# --- actions and 409 ------------------------------------------------------------------------------


def test_pause_resume_destroy_answer_202_with_the_new_state(api, user):
    running, paused = make_instance(user, S.RUNNING), make_instance(user, S.PAUSED)
    assert api.post(f"/api/v1/instances/{running.id}/pause").json()["status"] == "stopping"
    assert api.post(f"/api/v1/instances/{paused.id}/resume").json()["status"] == "waking"
    response = api.delete(f"/api/v1/instances/{running.id}")
    assert (response.status_code, response.json()["status"]) == (202, "destroying")


@pytest.mark.parametrize(
    "status, method, action",
    [
        (S.PAUSED, "post", "pause"),
        (S.REQUESTED, "post", "pause"),
        (S.RUNNING, "post", "resume"),
        (S.BOOTING, "post", "resume"),
        (S.DESTROYED, "delete", ""),
        (S.DESTROYED, "post", "pause"),
    ],
)
def test_illegal_transitions_are_409_with_the_current_state(api, user, status, method, action):
    instance = make_instance(user, status)
    url = f"/api/v1/instances/{instance.id}" + (f"/{action}" if action else "")
    response = getattr(api, method)(url)
    assert response.status_code == 409
    assert response.json()["error"] == "illegal_state"
    assert response.json()["status"] == status


# --- schema ----------------------------------------------------------------------------------------


def test_openapi_schema_lists_every_endpoint_and_its_errors(client, db):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert {"/api/v1/instances", "/api/v1/instances/{instance_id}", "/api/v1/instances/{instance_id}/pause",
            "/api/v1/instances/{instance_id}/resume", "/api/v1/auth/login", "/api/v1/auth/refresh"} <= set(paths)
    for verb, codes in [("post", {"202", "400", "401", "409"}), ("get", {"200", "401"})]:
        assert codes <= set(paths["/api/v1/instances"][verb]["responses"]), verb
    assert {"202", "401", "404", "409"} <= set(paths["/api/v1/instances/{instance_id}/pause"]["post"]["responses"])


def test_docs_page_serves_swagger_from_our_static_files(client, db):
    html = client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr" not in html and "unpkg" not in html


def test_openapi_schema_validates_without_warnings(db, tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/agent/status" in (tmp_path / "schema.yml").read_text()
