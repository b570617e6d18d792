"""OpenID Connect discovery and signing keys, per tenant path, shaped like Entra's documents.

MSAL (with `instance_discovery=False`) reads `{authority}/v2.0/.well-known/openid-configuration`
and uses `authorization_endpoint` and `token_endpoint`; for a tenant named by domain, the
endpoints carry the tenant's GUID, as Entra's do, so MSAL's cache realm is the GUID.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from .core import Entra


def register(app: Flask, entra: Entra) -> None:
    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def openid_configuration(tenant: str):
        path = entra.tenant_path(tenant, error="invalid_tenant")
        base = entra.authority
        segment = path.tenant.id if path.tenant else path.name
        issuer_tenant = path.tenant.id if path.tenant else "{tenantid}"
        return jsonify({
            "token_endpoint": f"{base}/{segment}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/{segment}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{issuer_tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/{segment}/oauth2/v2.0/authorize",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{segment}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time",
                "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash",
                "c_hash", "email"],
            "code_challenge_methods_supported": ["S256"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        })

    @app.get("/<tenant>/discovery/v2.0/keys")
    @app.get("/<tenant>/discovery/keys")
    def keys(tenant: str):
        entra.tenant_path(tenant, error="invalid_tenant")
        return jsonify(entra.ctx.signer.jwks())

    @app.get("/common/discovery/instance")
    def instance_discovery():
        """For clients that still run MSAL's instance discovery against this host."""
        endpoint = request.args.get("authorization_endpoint", "")
        tenant = "organizations"
        prefix = entra.authority + "/"
        if endpoint.startswith(prefix):
            tenant = endpoint[len(prefix):].split("/", 1)[0] or tenant
        host = entra.authority.split("://", 1)[1]
        return jsonify({
            "tenant_discovery_endpoint":
                f"{entra.authority}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host,
                          "aliases": [host]}],
        })
