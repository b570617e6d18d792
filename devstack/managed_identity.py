"""The App Service managed identity endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`).

Speaks the 2019-08-01 protocol that azure-identity's `ManagedIdentityCredential` uses on App
Service and Functions, so `DefaultAzureCredential()` works with no code change. Like App Service,
it serves the app's system-assigned identity when the request names none, and a user-assigned
identity chosen by `client_id`, `object_id` (or the older `principal_id`) or `mi_res_id`. The
seeded identities are `devstack.seed.IDENTITIES`: the system-assigned one (the operator), the
rotation app, the consent site and two consumers; each token carries its identity's `oid`,
`appid` and the vendor tenant's `tid`, so Key Vault's RBAC can tell them apart.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from . import seed
from .context import Context

SELECTORS = ("client_id", "object_id", "principal_id", "mi_res_id")


def create_app(ctx: Context) -> Flask:
    app = Flask("devstack.managed_identity")

    @app.get("/msi/token")
    def token():
        if request.headers.get("X-IDENTITY-HEADER") != ctx.identity_header:
            return _error(401, "invalid_request", "X-IDENTITY-HEADER is missing or wrong.")
        if request.args.get("api-version") != "2019-08-01":
            return _error(400, "invalid_request", "api-version must be 2019-08-01.")
        resource = request.args.get("resource", "").strip()
        if not resource:
            return _error(400, "invalid_request", "The 'resource' parameter is required.")
        chosen = [(name, request.args[name].strip()) for name in SELECTORS
                  if request.args.get(name, "").strip()]
        if len(chosen) > 1:
            return _error(400, "invalid_request",
                          "Give at most one of client_id, object_id and mi_res_id.")
        identity = identify(*chosen[0]) if chosen else seed.SYSTEM_IDENTITY
        if identity is None:
            name, value = chosen[0]
            return _error(400, "invalid_request",
                          f"No managed identity with {name} {value[:200]} is assigned to this app.")
        audience = resource[: -len("/.default")] if resource.endswith("/.default") else resource
        audience = audience.rstrip("/")
        access_token, expires_on = ctx.signer.access_token(
            tenant_id=seed.CPV_TENANT_ID,
            audience=audience,
            subject=identity.object_id,
            app_id=identity.client_id,
            idtyp="app",
            xms_mirid=identity.resource_id if identity.user_assigned else None,
        )
        return jsonify(
            access_token=access_token,
            expires_on=str(expires_on),
            resource=resource,
            token_type="Bearer",
            client_id=identity.client_id,
        )

    return app


def identify(selector: str, value: str) -> seed.Identity | None:
    """The seeded identity a selector names (ids and resource ids compare case-insensitively)."""
    key = value.lower()
    for identity in seed.IDENTITIES:
        ids = {"client_id": identity.client_id, "object_id": identity.object_id,
               "principal_id": identity.object_id, "mi_res_id": identity.resource_id}
        if ids[selector].lower() == key and (identity.user_assigned or selector != "mi_res_id"):
            return identity
    return None


def _error(status: int, code: str, description: str):
    response = jsonify(error=code, error_description=description)
    response.status_code = status
    return response
