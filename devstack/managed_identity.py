"""The App Service managed identity endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`).

Speaks the 2019-08-01 protocol that azure-identity's `ManagedIdentityCredential` uses on App
Service and Functions, so `DefaultAzureCredential()` works with no code change.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from . import seed
from .context import Context


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
        client_id = request.args.get("client_id") or seed.MANAGED_IDENTITY_CLIENT_ID
        if client_id != seed.MANAGED_IDENTITY_CLIENT_ID:
            return _error(400, "invalid_request", f"No identity with client_id {client_id}.")
        audience = resource[: -len("/.default")] if resource.endswith("/.default") else resource
        audience = audience.rstrip("/")
        access_token, expires_on = ctx.signer.access_token(
            tenant_id=seed.CPV_TENANT_ID,
            audience=audience,
            subject=seed.MANAGED_IDENTITY_OBJECT_ID,
            app_id=seed.MANAGED_IDENTITY_CLIENT_ID,
            idtyp="app",
        )
        return jsonify(
            access_token=access_token,
            expires_on=str(expires_on),
            resource=resource,
            token_type="Bearer",
            client_id=seed.MANAGED_IDENTITY_CLIENT_ID,
        )

    return app


def _error(status: int, code: str, description: str):
    response = jsonify(error=code, error_description=description)
    response.status_code = status
    return response
