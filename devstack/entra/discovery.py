"""OpenID Connect discovery and signing keys, per tenant path, shaped like Entra's documents.

MSAL (with `instance_discovery=False`) reads `{authority}/v2.0/.well-known/openid-configuration`
and uses `authorization_endpoint` and `token_endpoint`; for a tenant named by domain, the
endpoints carry the tenant's GUID, as Entra's do, so MSAL's cache realm is the GUID. The v1.0
document (`{authority}/.well-known/openid-configuration`) is what older clients and the
Microsoft identity web samples read for sign-out. Both documents and the keys are served with
Entra's caching and CORS headers.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from .core import Entra

# what login.microsoftonline.com sends with discovery documents and keys
DISCOVERY_HEADERS = {
    "Cache-Control": "max-age=86400, private",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
}
CLAIMS = ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
          "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
          "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"]


def register(app: Flask, entra: Entra) -> None:
    def published(document: dict):
        response = jsonify(document)
        response.headers.update(DISCOVERY_HEADERS)
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        return response

    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def openid_configuration(tenant: str):
        path = entra.tenant_path(tenant, error="invalid_tenant")
        base = entra.authority
        segment = path.tenant.id if path.tenant else path.name
        issuer_tenant = path.tenant.id if path.tenant else "{tenantid}"
        return published({
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
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/{segment}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{segment}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{segment}/oauth2/v2.0/logout",
            "claims_supported": CLAIMS,
            "kerberos_endpoint": f"{base}/{segment}/kerberos",
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        })

    @app.get("/<tenant>/.well-known/openid-configuration")
    def openid_configuration_v1(tenant: str):
        path = entra.tenant_path(tenant, error="invalid_tenant")
        base = entra.authority
        segment = path.tenant.id if path.tenant else path.name
        issuer_tenant = path.tenant.id if path.tenant else "{tenantid}"
        return published({
            "token_endpoint": f"{base}/{segment}/oauth2/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/common/discovery/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token",
                                         "token"],
            "scopes_supported": ["openid"],
            "issuer": entra.ctx.signer.issuer_v1(issuer_tenant),
            "microsoft_multi_refresh_token": True,
            "authorization_endpoint": f"{base}/{segment}/oauth2/authorize",
            "device_authorization_endpoint": f"{base}/{segment}/oauth2/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{segment}/oauth2/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat",
                                 "auth_time", "acr", "amr", "nonce", "email", "given_name",
                                 "family_name", "nickname"],
            "check_session_iframe": f"{base}/{segment}/oauth2/checksession",
            "userinfo_endpoint": f"{base}/{segment}/openid/userinfo",
            "kerberos_endpoint": f"{base}/{segment}/kerberos",
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        })

    @app.get("/<tenant>/discovery/v2.0/keys")
    @app.get("/<tenant>/discovery/keys")
    def keys(tenant: str):
        entra.tenant_path(tenant, error="invalid_tenant")
        return published(entra.ctx.signer.jwks())

    @app.get("/common/discovery/instance")
    def instance_discovery():
        """For clients that still run MSAL's instance discovery against this host."""
        endpoint = request.args.get("authorization_endpoint", "")
        tenant = "organizations"
        prefix = entra.authority + "/"
        if endpoint.startswith(prefix):
            tenant = endpoint[len(prefix):].split("/", 1)[0] or tenant
        host = entra.authority.split("://", 1)[1]
        return published({
            "tenant_discovery_endpoint":
                f"{entra.authority}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host,
                          "aliases": [host]}],
        })
