"""The account key, as a Bearer header or ?api_key=; anything else is vast's 401 body."""

import requests

AUTH_ERROR = {"success": False, "error": "auth_error", "msg": "Invalid user key"}


def test_bearer_key_is_accepted(cloud):
    reply = requests.get(f"{cloud.url}/api/v1/instances/", headers={"Authorization": f"Bearer {cloud.api_key}"})
    assert reply.status_code == 200
    assert reply.json()["instances"] == []


def test_api_key_query_parameter_is_accepted(cloud):
    reply = requests.post(f"{cloud.url}/api/v0/bundles/", params={"api_key": cloud.api_key}, json={"limit": 2})
    assert reply.status_code == 200
    assert len(reply.json()["offers"]) == 2


def test_wrong_key_gets_401_auth_error(cloud):
    reply = requests.get(f"{cloud.url}/api/v1/instances/", headers={"Authorization": "Bearer not-the-key"})
    assert reply.status_code == 401
    assert reply.json() == AUTH_ERROR


def test_missing_key_gets_401_auth_error(cloud):
    reply = requests.post(f"{cloud.url}/api/v0/bundles/", json={})
    assert reply.status_code == 401
    assert reply.json() == AUTH_ERROR


def test_admin_api_needs_the_account_key(cloud):
    assert requests.get(f"{cloud.url}/_devcloud/faults", params={"api_key": "nope"}).status_code == 401
    assert requests.get(f"{cloud.url}/_devcloud/faults", params={"api_key": cloud.api_key}).status_code == 200


def test_unknown_endpoint_is_404(cloud):
    reply = requests.get(f"{cloud.url}/api/v0/nothing/", params={"api_key": cloud.api_key})
    assert reply.status_code == 404
    assert reply.json()["success"] is False
