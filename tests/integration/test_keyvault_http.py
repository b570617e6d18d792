"""Devstack's vault on the wire: challenge, token checks, validation and response shapes.

Raw `requests` calls do what the SDK never would (no token, forged tokens, broken bodies) and
check Key Vault's exact answers. Secret names are unique per test: the devstack is shared.
"""

from __future__ import annotations

import json
import time
import uuid
from types import EllipsisType

import jwt
import pytest
import requests
from azure.identity import DefaultAzureCredential
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack import seed
from devstack.keyvault.validation import API_VERSIONS
from devstack.tokens import Signer

API = "7.6"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Vault:
    def __init__(self, url: str, ca_bundle: str, token: str):
        self.url, self.ca_bundle, self.token = url.rstrip("/"), ca_bundle, token

    def call(self, method: str, path: str, *, token: str | EllipsisType | None = ...,
             api_version: str | None = API, params: dict | None = None, **kwargs):
        """A request with this vault's token, another `token`, or none (`token=None`)."""
        token = self.token if token is ... else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        query = dict(params or {})
        if api_version is not None:
            query["api-version"] = api_version
        url = path if path.startswith("https://") else self.url + path
        return requests.request(method, url, params=query, headers=headers,
                                verify=self.ca_bundle, timeout=10, **kwargs)

    def put(self, name: str, body) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.call("PUT", f"/secrets/{name}", data=data,
                         headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def vault(devstack) -> Vault:
    credential = DefaultAzureCredential()
    token = credential.get_token(f"{seed.VAULT_RESOURCE}/.default").token
    return Vault(devstack.vault_url, devstack.ca_bundle, token)


def error_of(response: requests.Response) -> dict:
    return response.json()["error"]


def test_unauthenticated_request_gets_the_challenge(vault, devstack):
    name = unique("challenge")
    response = vault.call("PUT", f"/secrets/{name}", token=None, json={"value": "v"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{devstack.authority}/{seed.CPV_TENANT_ID}", '
        f'resource="{seed.VAULT_RESOURCE}"'
    )
    assert error_of(response) == {
        "code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token.",
    }
    # the SDK's first, bodiless request is answered the same way
    bodiless = vault.call("PUT", f"/secrets/{name}", token=None, headers={"Content-Length": "0"})
    assert bodiless.status_code == 401 and "WWW-Authenticate" in bodiless.headers
    assert vault.call("GET", f"/secrets/{name}").status_code == 404


def test_forged_and_misaddressed_tokens_are_refused(vault, devstack):
    name = unique("forged")
    claims = jwt.decode(vault.token, options={"verify_signature": False})
    header = jwt.get_unverified_header(vault.token)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": header["kid"]})
    stranger = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "not-ours"})
    for token in (forged, stranger, "not-a-jwt"):
        response = vault.call("PUT", f"/secrets/{name}", token=token, json={"value": "v"})
        assert response.status_code == 401, token
        assert response.headers["WWW-Authenticate"].startswith('Bearer authorization="')
        assert error_of(response)["code"] == "Unauthorized"
        assert error_of(response)["message"].startswith("AKV100")
    assert "AKV10046" in error_of(vault.call("GET", "/secrets", token=stranger))["message"]

    # devstack's own key, but expired or issued in another tenant
    signer = Signer(devstack.state_dir)
    expired = signer.sign(dict(claims, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600))
    assert error_of(vault.call("GET", "/secrets", token=expired))["message"] == (
        "AKV10021: Token is expired."
    )
    foreign = signer.sign(dict(claims, tid=seed.PARTNER_TENANT_ID,
                               iss=signer.issuer(seed.PARTNER_TENANT_ID)))
    response = vault.call("GET", "/secrets", token=foreign)
    assert response.status_code == 401
    assert error_of(response)["message"].startswith("AKV10032: Invalid issuer.")

    arm = DefaultAzureCredential().get_token(f"{seed.ARM_RESOURCE}/.default").token
    response = vault.call("GET", "/secrets", token=arm)
    assert response.status_code == 401
    assert error_of(response)["message"] == (
        f"AKV10022: Invalid audience. Expected {seed.VAULT_RESOURCE}, found: {seed.ARM_RESOURCE}."
    )
    assert vault.call("GET", f"/secrets/{name}").status_code == 404


def test_every_api_version_from_7_0_to_the_sdk_default(vault):
    name = unique("versions")
    assert vault.put(name, {"value": "v"}).status_code == 200
    for version in API_VERSIONS:
        assert vault.call("GET", f"/secrets/{name}", api_version=version).status_code == 200
    response = vault.call("GET", f"/secrets/{name}", api_version="7.9")
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "BadParameter",
        "message": "The specified version (7.9) is not recognized. Consider using the latest "
                   "supported version (2026-04-01).",
    }
    assert vault.call("GET", f"/secrets/{name}", api_version=None).status_code == 400
    refused = vault.call("PUT", f"/secrets/{name}", api_version="2016-10-01", json={"value": "x"})
    assert refused.status_code == 400
    assert vault.call("GET", f"/secrets/{name}").json()["value"] == "v"


def test_bundle_shape_and_trailing_slash_latest(vault):
    name = unique("shape")
    first = vault.put(name, {"value": "one", "contentType": "text/plain",
                             "attributes": {"exp": 2000000000}}).json()
    second = vault.put(name, {"value": "two"}).json()
    assert set(first) == {"value", "contentType", "id", "attributes"}
    assert set(first["attributes"]) == {"enabled", "exp", "created", "updated", "recoveryLevel",
                                        "recoverableDays"}
    assert first["attributes"]["recoveryLevel"] == "Recoverable+Purgeable"
    assert first["attributes"]["recoverableDays"] == 90
    assert first["id"] == f"{vault.url}/secrets/{name}/{first['id'][-32:]}"
    latest = vault.call("GET", f"/secrets/{name}/").json()
    assert latest == second
    [item] = vault.call("GET", f"/secrets/{name}/versions",
                        params={"maxresults": 1}).json()["value"]
    assert "value" not in item


def test_ids_use_the_host_the_client_called(vault, devstack):
    name = unique("host")
    vault.put(name, {"value": "v"})
    by_ip = vault.url.replace("localhost", "127.0.0.1")
    body = vault.call("GET", f"{by_ip}/secrets/{name}").json()
    assert body["id"].startswith(f"{by_ip}/secrets/{name}/")


def test_bad_names_are_400(vault):
    for bad in ("bad_name", "x" * 128, "dots.not.allowed"):
        response = vault.call("GET", f"/secrets/{bad}")
        assert response.status_code == 400
        assert error_of(response) == {
            "code": "BadParameter", "message": f"The request URI contains an invalid name: {bad}",
        }


@pytest.mark.parametrize("body", [
    b"{not json",
    b"[]",
    {"contentType": "no value"},
    {"value": 42},
    {"value": "v", "contentType": 5},
    {"value": "v", "tags": ["a"]},
    {"value": "v", "tags": {"a": 1}},
    {"value": "v", "tags": {f"t{i}": "v" for i in range(16)}},
    {"value": "v", "tags": {"t" * 513: "v"}},
    {"value": "v", "tags": {"t": "v" * 257}},
    {"value": "v", "attributes": {"enabled": "yes"}},
    {"value": "v", "attributes": {"nbf": "2026-01-01"}},
    {"value": "v", "attributes": []},
    {"value": "x" * (26 * 1024)},
    {"value": "é" * (13 * 1024)},  # 26 KB of UTF-8 in 13 K characters
], ids=lambda body: str(body)[:40])
def test_malformed_set_is_400_and_changes_nothing(vault, body):
    name = unique("malformed")
    response = vault.put(name, body)
    assert response.status_code == 400
    assert error_of(response)["code"] == "BadParameter"
    assert vault.call("GET", f"/secrets/{name}").status_code == 404


def test_malformed_update_changes_nothing(vault):
    name = unique("patch")
    before = vault.put(name, {"value": "v", "tags": {"a": "b"}}).json()
    for body in (b"{", {"tags": {"x": 1}}, {"attributes": {"enabled": 1}}):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = vault.call("PATCH", f"/secrets/{name}/", data=data,
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 400
    assert vault.call("GET", f"/secrets/{name}").json() == before


def test_paging_parameters(vault):
    prefix = unique("pages")
    for i in range(3):
        vault.put(f"{prefix}-{i}", {"value": "v"})
    for bad in ("0", "26", "many"):
        response = vault.call("GET", "/secrets", params={"maxresults": bad})
        assert response.status_code == 400 and error_of(response)["code"] == "BadParameter"
    response = vault.call("GET", "/secrets", params={"$skiptoken": "garbage!"})
    assert response.status_code == 400
    page = vault.call("GET", "/secrets", params={"maxresults": 1}).json()
    assert len(page["value"]) == 1
    assert page["nextLink"].startswith(f"{vault.url}/secrets?api-version={API}&$skiptoken=")
    following = vault.call("GET", page["nextLink"], api_version=None).json()
    assert following["value"][0]["id"] > page["value"][0]["id"]


def test_restore_refuses_anything_but_an_intact_backup(vault):
    name = unique("blob")
    vault.put(name, {"value": "v"})
    blob = vault.call("POST", f"/secrets/{name}/backup").json()["value"]
    tampered = blob[:-6] + ("A" if blob[-6] != "A" else "B") + blob[-5:]
    # a blob that is not one of the vault's own is `Malformed backup blob` (issue 14, compared
    # with the service); a missing one is an ordinary BadParameter
    for value, code in (("garbage", "Malformed backup blob"),
                        (tampered, "Malformed backup blob"), ("", "BadParameter")):
        response = vault.call("POST", "/secrets/restore", json={"value": value})
        assert response.status_code == 400, value
        assert error_of(response)["code"] == code
    assert vault.call("POST", "/secrets/restore", json={"value": blob}).status_code == 409


def test_stats_endpoint(vault):
    url = vault.url + "/_devstack/stats"
    before = requests.get(url, verify=vault.ca_bundle, timeout=10).json()
    vault.put(unique("counted"), {"value": "v"})
    after = requests.get(url, verify=vault.ca_bundle, timeout=10).json()
    assert set(after) == {"requests", "throttled", "creates", "create_attempts",
                          "creates_throttled", "peak_create_attempts_10s"}
    assert after["requests"] >= before["requests"] + 1
    assert after["creates"] >= before["creates"] + 1
    # every create is an attempt, admitted or not; the peak counts attempts in any 10 s
    assert after["create_attempts"] >= before["create_attempts"] + 1
    assert after["peak_create_attempts_10s"] >= 1
