"""The node routes every chunk takes (result, lease, heartbeat) skip the framework's layers
(`FastRoutes`) and answer exactly as the full stack would: the Host check in front, one
JSON shape for every error, CORS for a request that carries an Origin."""

from __future__ import annotations

import pytest

from apphelpers import NODE, InProcessFarm
from blendfarm.server.app import HOT_ROUTES

BEAT = {"tasks": [], "log": []}


def test_the_hot_routes_are_the_per_chunk_node_routes() -> None:
    assert sorted((r.path, *sorted(r.methods or ())) for r in HOT_ROUTES) == [
        ("/api/nodes/{name}/heartbeat", "POST"),
        ("/api/nodes/{name}/lease", "POST"),
        ("/api/tasks/{task_id}/result", "PUT"),
    ]


def test_a_foreign_host_is_refused_on_a_hot_route(farm: InProcessFarm) -> None:
    resp = farm.client.post(
        "/api/nodes/n1/heartbeat", json=BEAT, headers={**NODE, "Host": "evil.example"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_host"


def test_errors_of_a_hot_route_have_the_one_json_shape(farm: InProcessFarm) -> None:
    no_token = farm.client.post("/api/nodes/n1/heartbeat", json=BEAT)
    assert no_token.status_code == 401 and set(no_token.json()["error"]) == {
        "code",
        "message",
        "status",
    }
    bad_name = farm.client.post("/api/nodes/no%20spaces/lease", headers=NODE)
    assert bad_name.status_code == 400 and bad_name.json()["error"]["code"] == "bad_input"
    unknown = farm.client.put("/api/tasks/999/result?lease=x", headers=NODE, content=b"x")
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == 404
    wrong_method = farm.client.get("/api/nodes/n1/lease", headers=NODE)  # the router's 405
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["status"] == 405


def test_a_bug_in_a_hot_route_is_a_json_500_and_logged(
    farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(farm.farm.dispatch, "heartbeat", broken)
    resp = farm.client.post("/api/nodes/n1/heartbeat", json=BEAT, headers=NODE)
    assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal"
    assert "a bug of ours" in caplog.text


def test_a_browser_request_to_a_hot_route_still_gets_cors(farm: InProcessFarm) -> None:
    origin = "http://127.0.0.1:8080"  # the dashboard's own origin
    resp = farm.client.post(
        "/api/nodes/n1/heartbeat", json=BEAT, headers={**NODE, "Origin": origin}
    )
    assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == origin
    foreign = farm.client.post(
        "/api/nodes/n1/heartbeat", json=BEAT, headers={**NODE, "Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
