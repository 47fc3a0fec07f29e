"""The registry emulator's REST surface checked at the HTTP level: status codes, error codes, shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pushline.emulators import RegistryServer

CT = "application/vnd.schemaregistry.v1+json"


@pytest.fixture(scope="module")
def server() -> Iterator[RegistryServer]:
    with RegistryServer() as started:
        yield started


@pytest.fixture
def http(server: RegistryServer) -> Iterator[httpx.Client]:
    server.reset()
    with httpx.Client(base_url=server.url, headers={"Content-Type": CT}) as client:
        yield client


def rec(*fields: tuple[str, Any], name: str = "R", **extra: Any) -> str:
    return json.dumps(
        {
            "type": "record",
            "name": name,
            "fields": [{"name": n, "type": t} for n, t in fields],
            **extra,
        }
    )


V1 = rec(("a", "int"))
V2 = json.dumps(
    {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}],
    }
)


def register(http: httpx.Client, subject: str, schema: str, **params: str) -> httpx.Response:
    return http.post(f"/subjects/{subject}/versions", json={"schema": schema}, params=params)


def error(response: httpx.Response) -> tuple[int, int]:
    body = response.json()
    return response.status_code, body["error_code"]


def test_register_answers_the_id_with_the_registry_content_type(http: httpx.Client) -> None:
    response = register(http, "s", V1)
    assert response.status_code == 200
    assert response.headers["content-type"] == CT
    assert response.json() == {"id": 1}


def test_plain_json_requests_are_accepted_and_other_media_types_refused(
    http: httpx.Client,
) -> None:
    ok = http.post(
        "/subjects/s/versions",
        content=json.dumps({"schema": V1}),
        headers={"Content-Type": "application/json"},
    )
    assert ok.json() == {"id": 1}
    refused = http.post(
        "/subjects/s/versions",
        content=json.dumps({"schema": V1}),
        headers={"Content-Type": "text/plain"},
    )
    assert error(refused) == (415, 415)
    broken = http.post("/subjects/s/versions", content=b"{nope")
    assert error(broken) == (400, 400)


def test_the_same_schema_in_other_whitespace_gets_the_same_id_and_version(
    http: httpx.Client,
) -> None:
    assert register(http, "s", V1).json() == {"id": 1}
    reformatted = json.dumps(json.loads(V1), indent=3)
    assert register(http, "s", reformatted).json() == {"id": 1}
    assert http.get("/subjects/s/versions").json() == [1]
    assert register(http, "other", reformatted).json() == {"id": 1}
    assert http.get("/schemas/ids/1/subjects").json() == ["other", "s"]
    assert http.get("/schemas/ids/1/versions").json() == [
        {"subject": "other", "version": 1},
        {"subject": "s", "version": 1},
    ]


def test_concurrent_registrations_are_consistent(
    http: httpx.Client, server: RegistryServer
) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        with httpx.Client(base_url=server.url) as own:
            same = own.post("/subjects/same/versions", json={"schema": V1}).json()["id"]
            schema = rec(("a", "int"), name=f"R{index}")
            own.put(f"/config/many{index}", json={"compatibility": "NONE"})
            distinct = own.post(f"/subjects/many{index}/versions", json={"schema": schema})
        with lock:
            results.append(same)
            results.append(distinct.json()["id"])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same_ids = set(results[0::2])
    distinct_ids = results[1::2]
    assert len(same_ids) == 1
    assert len(set(distinct_ids)) == 8
    assert same_ids.isdisjoint(distinct_ids)
    assert http.get("/subjects/same/versions").json() == [1]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"schema": '{"type": "record", "name": "R"}'}, "needs a 'fields' list"),
        ({"schema": '{"type": "nope"}'}, "unknown type 'nope'"),
        ({"schema": "{not json"}, "not valid JSON"),
        ({"schema": rec(("a", "int"), ("a", "long"))}, "field 'a' twice"),
        ({"schema": ""}, "Empty schema"),
        ({}, "Empty schema"),
        ({"schema": 'syntax = "proto3";', "schemaType": "PROTOBUF"}, "PROTOBUF"),
        ({"schema": "{}", "schemaType": "JSON"}, "supports AVRO only"),
        (
            {"schema": V1, "references": [{"name": "x", "subject": "x", "version": 1}]},
            "references are not supported",
        ),
    ],
)
def test_invalid_schemas_are_422_42201(
    http: httpx.Client, body: dict[str, Any], fragment: str
) -> None:
    response = http.post("/subjects/s/versions", json=body)
    assert error(response) == (422, 42201)
    assert fragment in response.json()["message"]
    assert http.get("/subjects").json() == []


def test_an_incompatible_schema_is_409_and_registers_nothing(http: httpx.Client) -> None:
    register(http, "s", V1)
    response = register(http, "s", rec(("a", "int"), ("b", "int")))
    assert error(response) == (409, 409)
    message = response.json()["message"]
    assert message.startswith(
        'Schema being registered is incompatible with an earlier schema for subject "s", details: ['
    )
    assert "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'" in message
    assert "additionalInfo:'b'" in message
    assert "{oldSchemaVersion: 1}" in message
    assert "{compatibility: 'BACKWARD'}" in message
    assert http.get("/subjects/s/versions").json() == [1]


def test_version_lookups_and_their_errors(http: httpx.Client) -> None:
    register(http, "s", V1)
    register(http, "s", V2)
    expected_v2 = {"subject": "s", "version": 2, "id": 2, "schema": json.loads(V2)}
    for version in ("2", "latest", "-1"):
        got = http.get(f"/subjects/s/versions/{version}").json()
        assert {**got, "schema": json.loads(got["schema"])} == expected_v2
    assert http.get("/subjects/s/versions/1").json()["id"] == 1
    raw = http.get("/subjects/s/versions/latest/schema")
    assert raw.status_code == 200
    assert json.loads(raw.text) == json.loads(V2)
    assert error(http.get("/subjects/s/versions/3")) == (404, 40402)
    assert error(http.get("/subjects/nope/versions/1")) == (404, 40401)
    assert error(http.get("/subjects/nope/versions")) == (404, 40401)
    for bad in ("0", "abc", "-2", "2147483648", "1.5"):
        response = http.get(f"/subjects/s/versions/{bad}")
        assert error(response) == (422, 42202), bad
        assert "is not a valid version id" in response.json()["message"]


def test_schema_by_id(http: httpx.Client) -> None:
    register(http, "s", V1)
    assert json.loads(http.get("/schemas/ids/1").json()["schema"]) == json.loads(V1)
    assert json.loads(http.get("/schemas/ids/1/schema").text) == json.loads(V1)
    missing = http.get("/schemas/ids/42")
    assert error(missing) == (404, 40403)
    assert missing.json()["message"] == "Schema 42 not found"
    assert error(http.get("/schemas/ids/42/versions")) == (404, 40403)
    assert http.get("/schemas/types").json() == ["AVRO"]


def test_lookup_under_a_subject(http: httpx.Client) -> None:
    register(http, "s", V1)
    found = http.post("/subjects/s", json={"schema": json.dumps(json.loads(V1), indent=2)})
    assert found.status_code == 200
    assert {k: found.json()[k] for k in ("subject", "id", "version")} == {
        "subject": "s",
        "id": 1,
        "version": 1,
    }
    assert error(http.post("/subjects/s", json={"schema": V2})) == (404, 40403)
    assert error(http.post("/subjects/nope", json={"schema": V1})) == (404, 40401)
    assert error(http.post("/subjects/s", json={"schema": "{bad"})) == (422, 42201)


def test_normalize_qualifies_names_before_comparing(http: httpx.Client) -> None:
    short = rec(("a", "int"), namespace="com.x")
    qualified = rec(("a", "int"), name="com.x.R")
    assert register(http, "s", short, normalize="true").json() == {"id": 1}
    assert register(http, "s", qualified, normalize="true").json() == {"id": 1}
    # Without normalization the short form is a text of its own, so a new (compatible) schema;
    # the qualified form already reads like the normalized text, so it is schema 1 again.
    assert register(http, "t", short).json() == {"id": 2}
    assert register(http, "t", qualified).json() == {"id": 1}
    assert http.get("/subjects/t/versions").json() == [1, 2]
    normalized = json.loads(http.get("/schemas/ids/1").json()["schema"])
    assert normalized["name"] == "com.x.R"
    assert "namespace" not in normalized


def test_soft_and_permanent_deletes(http: httpx.Client) -> None:
    register(http, "s", V1)
    register(http, "s", V2)
    assert error(http.delete("/subjects/s/versions/1", params={"permanent": "true"})) == (
        404,
        40407,
    )
    assert http.delete("/subjects/s/versions/1").json() == 1
    assert error(http.delete("/subjects/s/versions/1")) == (404, 40406)
    assert http.get("/subjects/s/versions").json() == [2]
    assert http.get("/subjects/s/versions", params={"deleted": "true"}).json() == [1, 2]
    assert http.get("/subjects/s/versions", params={"deleted_only": "true"}).json() == [1]
    assert error(http.get("/subjects/s/versions/1")) == (404, 40402)
    assert http.get("/subjects/s/versions/1", params={"deleted": "true"}).json()["id"] == 1
    assert http.delete("/subjects/s/versions/1", params={"permanent": "true"}).json() == 1
    assert http.get("/subjects/s/versions", params={"deleted": "true"}).json() == [2]

    assert error(http.delete("/subjects/s", params={"permanent": "true"})) == (404, 40405)
    assert http.delete("/subjects/s").json() == [2]
    assert error(http.delete("/subjects/s")) == (404, 40404)
    assert http.get("/subjects").json() == []
    assert http.get("/subjects", params={"deleted": "true"}).json() == ["s"]
    assert http.get("/subjects", params={"deleted_only": "true"}).json() == ["s"]
    assert error(http.get("/subjects/s/versions")) == (404, 40401)

    # Registering again continues the version numbers, with the schema's old id.
    assert register(http, "s", V2).json() == {"id": 2}
    assert http.get("/subjects/s/versions").json() == [3]
    assert http.delete("/subjects/s").json() == [3]
    assert http.delete("/subjects/s", params={"permanent": "true"}).json() == [2, 3]
    assert http.get("/subjects", params={"deleted": "true"}).json() == []
    assert error(http.delete("/subjects/s")) == (404, 40401)
    assert http.get("/schemas/ids/2").status_code == 200


def test_soft_deleted_versions_no_longer_constrain_compatibility(http: httpx.Client) -> None:
    register(http, "s", V1)
    incompatible = rec(("a", "string"))
    assert error(register(http, "s", incompatible)) == (409, 409)
    http.delete("/subjects/s/versions/1")
    assert register(http, "s", incompatible).json() == {"id": 2}
    assert http.get("/subjects/s/versions").json() == [2]


def test_compatibility_endpoint(http: httpx.Client) -> None:
    register(http, "s", V1)
    url = "/compatibility/subjects/s/versions/latest"
    assert http.post(url, json={"schema": V2}).json() == {"is_compatible": True}
    bad = rec(("a", "int"), ("b", "int"))
    assert http.post(url, json={"schema": bad}).json() == {"is_compatible": False}
    verbose = http.post(url, json={"schema": bad}, params={"verbose": "true"}).json()
    assert verbose["is_compatible"] is False
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m for m in verbose["messages"])
    assert http.post(url, json={"schema": V2}, params={"verbose": "true"}).json() == {
        "is_compatible": True,
        "messages": [],
    }
    assert http.post("/compatibility/subjects/s/versions/1", json={"schema": V2}).json() == {
        "is_compatible": True
    }
    unknown_subject = http.post("/compatibility/subjects/nope/versions/latest", json={"schema": V1})
    assert error(unknown_subject) == (404, 40401)
    unknown_version = http.post("/compatibility/subjects/s/versions/9", json={"schema": V1})
    assert error(unknown_version) == (404, 40402)
    bad_version = http.post("/compatibility/subjects/s/versions/x", json={"schema": V1})
    assert error(bad_version) == (422, 42202)
    invalid = http.post(url, json={"schema": "{"})
    assert error(invalid) == (422, 42201)
    # Against all versions: a subject without versions constrains nothing.
    all_versions = http.post("/compatibility/subjects/nope/versions", json={"schema": V1})
    assert all_versions.json() == {"is_compatible": True}


def test_compatibility_endpoint_with_a_specific_version_uses_the_level_direction(
    http: httpx.Client,
) -> None:
    http.put("/config/s", json={"compatibility": "FORWARD_TRANSITIVE"})
    register(http, "s", V1)
    register(http, "s", V2)
    grown = rec(("a", "int"), ("c", "int"))  # an old reader ignores the new field
    shrunk = rec(("b", "int"))  # an old reader of v1 needs "a"
    url = "/compatibility/subjects/s/versions/1"
    assert http.post(url, json={"schema": grown}).json() == {"is_compatible": True}
    assert http.post(url, json={"schema": shrunk}).json() == {"is_compatible": False}


def test_config_endpoints(http: httpx.Client) -> None:
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
    assert http.put("/config", json={"compatibility": "full"}).json() == {"compatibility": "FULL"}
    assert http.get("/config").json() == {"compatibilityLevel": "FULL"}
    assert error(http.get("/config/s")) == (404, 40408)
    assert http.get("/config/s", params={"defaultToGlobal": "true"}).json() == {
        "compatibilityLevel": "FULL"
    }
    put = http.put("/config/s", json={"compatibilityLevel": "NONE"})
    assert put.json() == {"compatibility": "NONE"}
    assert http.get("/config/s").json() == {"compatibilityLevel": "NONE"}
    for bad in ({"compatibility": "SIDEWAYS"}, {"compatibility": 3}, {}, ["FULL"]):
        response = http.put("/config/s", json=bad)
        assert error(response) == (422, 42203)
        assert response.json()["message"].startswith("Invalid compatibility level")
    assert http.delete("/config/s").json() == {"compatibilityLevel": "NONE"}
    assert error(http.get("/config/s")) == (404, 40408)
    assert error(http.delete("/config/s")) == (404, 40408)
    assert http.delete("/config").json() == {"compatibilityLevel": "FULL"}
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}


def test_deleting_a_subject_drops_its_compatibility_setting(http: httpx.Client) -> None:
    http.put("/config/s", json={"compatibility": "NONE"})
    register(http, "s", V1)
    http.delete("/subjects/s")
    assert error(http.get("/config/s")) == (404, 40408)


def test_subject_listing_filters_and_pages(http: httpx.Client) -> None:
    for subject in ("b-value", "a-value", "a-key", "c-value"):
        register(http, subject, V1)
    assert http.get("/subjects").json() == ["a-key", "a-value", "b-value", "c-value"]
    assert http.get("/subjects", params={"subjectPrefix": "a-"}).json() == ["a-key", "a-value"]
    assert http.get("/subjects", params={"offset": "1", "limit": "2"}).json() == [
        "a-value",
        "b-value",
    ]


def test_subjects_with_reserved_characters_round_trip(http: httpx.Client) -> None:
    subject = "team/orders value"
    encoded = "team%2Forders%20value"
    assert register(http, encoded, V1).json() == {"id": 1}
    assert http.get("/subjects").json() == [subject]
    assert http.get(f"/subjects/{encoded}/versions/latest").json()["subject"] == subject


def test_unknown_paths_and_methods(http: httpx.Client) -> None:
    assert error(http.get("/nope")) == (404, 404)
    assert error(http.get("/subjects/s/versions/1/nope")) == (404, 404)
    assert error(http.put("/subjects")) == (405, 405)
    assert http.get("/").json() == {}
    assert http.get("/mode").json() == {"mode": "READWRITE"}
    # Newer clients ask for associations first and fall back to the topic name strategy.
    assert http.get("/associations/resources/-/orders").json() == []
