"""A stub of the Partner Center REST API that, like the real one, serves only Admin Agents who
signed in with MFA.

`GET /v1/profiles/organization` and `GET /v1/customers` answer a bearer token that devstack's
authority signed for `https://api.partnercenter.microsoft.com`, unexpired, with `mfa` in `amr`,
from a member of the tenant's AdminAgents group. Otherwise 401 (403 for a user who is not an
Admin Agent) with Partner Center's error body: `code`, `description` and `source` as documented
for its REST errors, plus `errorName`, `errorMessage`, `isRetryable` and `data`.
`MS-CorrelationId` and `MS-RequestId` are echoed back (new GUIDs when absent or malformed).
"""

from __future__ import annotations

import hashlib
import uuid

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import seed
from .context import Context
from .entra import world
from .tokens import TokenError

AUDIENCES = (seed.PARTNER_CENTER_RESOURCE, seed.PARTNER_CENTER_RESOURCE + "/",
             seed.PARTNER_CENTER_APP_ID)
MAX_PAGE = 500

# (HTTP status, code, errorName, description)
MISSING_TOKEN = (401, 800001, "PartnerTokenMissing", "Partner Token missing in request context")
INVALID_TOKEN = (401, 900300, "InvalidToken", "The access token is not valid: {reason}")
EXPIRED_TOKEN = (401, 900301, "TokenExpired", "The access token is expired.")
WRONG_AUDIENCE = (401, 900302, "InvalidAudience",
                  "The audience of the access token is not Partner Center "
                  f"({seed.PARTNER_CENTER_RESOURCE}).")
MFA_REQUIRED = (401, 10001, "MfaRequired", "Authentication failed. MFA required.")
NOT_ADMIN_AGENT = (403, 2032, "AccessDenied",
                   "Access denied. The user is not a member of the AdminAgents group of the "
                   "partner tenant.")
APP_ONLY = (401, 900303, "AppOnlyTokenNotSupported",
            "This operation requires App+User authentication; app-only tokens are not accepted.")
UNKNOWN_PARTNER = (403, 600008, "PartnerNotFound",
                   "The partner tenant is not enrolled in the Cloud Solution Provider program.")
BAD_REQUEST = (400, 800002, "InvalidRequestInput", "Invalid request input: {reason}")


class PartnerCenterError(Exception):
    def __init__(self, kind: tuple[int, int, str, str], **fields: str):
        status, code, name, description = kind
        super().__init__(description)
        self.status, self.code, self.name = status, code, name
        self.description = description.format(**fields) if fields else description


def create_app(ctx: Context) -> Flask:
    app = Flask("devstack.partner_center")
    directory = world.load(ctx.state_dir, ctx.cpv_client_secret)

    @app.before_request
    def correlate():
        g.correlation_id = _guid_header("MS-CorrelationId")
        g.request_id = _guid_header("MS-RequestId")

    @app.after_request
    def echo(response):
        response.headers["MS-CorrelationId"] = g.get("correlation_id") or str(uuid.uuid4())
        response.headers["MS-RequestId"] = g.get("request_id") or str(uuid.uuid4())
        response.headers["MS-CV"] = f"{uuid.uuid4().hex[:16]}.0"
        return response

    @app.errorhandler(PartnerCenterError)
    def partner_center_error(exc: PartnerCenterError):
        response = jsonify(
            code=exc.code, description=exc.description, errorName=exc.name,
            errorMessage=exc.description, isRetryable=False, data=[], source="PartnerFD")
        response.status_code = exc.status
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = (
                f'Bearer realm="{seed.PARTNER_CENTER_RESOURCE}", error="invalid_token"')
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = jsonify(code=exc.code, description=exc.description, errorName=exc.name,
                           errorMessage=exc.description, isRetryable=False, data=[],
                           source="PartnerFD")
        response.status_code = exc.code or 400
        return response

    def caller() -> dict:
        """The claims of an acceptable bearer token, or a PartnerCenterError."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PartnerCenterError(MISSING_TOKEN)
        try:
            claims = ctx.signer.verify(token.strip(), AUDIENCES)
        except TokenError as exc:
            text = str(exc)
            if "expired" in text:
                raise PartnerCenterError(EXPIRED_TOKEN) from exc
            if "audience" in text:
                raise PartnerCenterError(WRONG_AUDIENCE) from exc
            raise PartnerCenterError(INVALID_TOKEN, reason=text) from exc
        if claims.get("iss") not in ctx.signer.issuers(str(claims.get("tid"))):
            raise PartnerCenterError(INVALID_TOKEN, reason="the issuer is not trusted.")
        if claims.get("idtyp") == "app" or "scp" not in claims:
            raise PartnerCenterError(APP_ONLY)
        amr = claims.get("amr")
        if not isinstance(amr, list) or "mfa" not in amr:
            raise PartnerCenterError(MFA_REQUIRED)
        tenant = directory.tenants.get(str(claims.get("tid")))
        if tenant is None:
            raise PartnerCenterError(UNKNOWN_PARTNER)
        groups = claims.get("groups")
        if not (tenant.admin_agents_group and isinstance(groups, list)
                and tenant.admin_agents_group in groups):
            raise PartnerCenterError(NOT_ADMIN_AGENT)
        return claims

    @app.get("/v1/profiles/organization")
    def organization_profile():
        claims = caller()
        return jsonify(_organization_profile(directory.tenants[claims["tid"]], claims))

    @app.get("/v1/customers")
    def customers():
        claims = caller()
        tenant = directory.tenants[claims["tid"]]
        size = request.args.get("size", str(MAX_PAGE))
        if not size.isdigit() or not 1 <= int(size) <= MAX_PAGE:
            raise PartnerCenterError(BAD_REQUEST, reason=f"size must be 1..{MAX_PAGE}.")
        start = _continuation(request.headers.get("MS-ContinuationToken", ""))
        everyone = _customers(tenant)
        page = everyone[start:start + int(size)]
        body = {
            "totalCount": len(page),
            "items": page,
            "links": {"self": {"uri": f"/customers?size={size}", "method": "GET",
                               "headers": []}},
            "attributes": {"objectType": "Collection"},
        }
        if start + int(size) < len(everyone):
            body["continuationToken"] = str(start + int(size))
            body["links"]["next"] = {
                "uri": f"/customers?size={size}", "method": "GET",
                "headers": [{"key": "MS-ContinuationToken", "value": str(start + int(size))}]}
        return jsonify(body)

    return app


def _guid_header(name: str) -> str:
    value = request.headers.get(name, "")
    try:
        return str(uuid.UUID(value)) if value and len(value) <= 64 else str(uuid.uuid4())
    except ValueError:
        return str(uuid.uuid4())


def _continuation(value: str) -> int:
    if not value:
        return 0
    if not value.isdigit() or len(value) > 6:
        raise PartnerCenterError(BAD_REQUEST, reason="the continuation token is not valid.")
    return int(value)


def _stable_guid(*parts: str) -> str:
    return str(uuid.UUID(hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]))


def _organization_profile(tenant, claims: dict) -> dict:
    company = tenant.name
    return {
        "id": tenant.id,
        "companyName": company,
        "tenantId": tenant.id,
        "domain": tenant.domain,
        "address": {
            "country": "US",
            "city": "Redmond",
            "state": "WA",
            "addressLine1": "1 Microsoft Way",
            "postalCode": "98052",
            "firstName": "Partner",
            "lastName": "Admin",
            "phoneNumber": "4255550100",
        },
        "email": claims.get("upn") or f"admin@{tenant.domain}",
        "culture": "en-US",
        "language": "en",
        "companyWebsite": f"https://www.{tenant.domain}",
        "links": {"self": {"uri": "/profiles/organization", "method": "GET", "headers": []}},
        "attributes": {"etag": f'"{_stable_guid("etag", tenant.id)}"',
                       "objectType": "OrganizationProfile"},
    }


CUSTOMER_NAMES = ("Northwind Traders", "Tailspin Toys", "Wingtip Toys", "Adventure Works",
                  "Woodgrove Bank")


def _customers(tenant) -> list[dict]:
    count = len(CUSTOMER_NAMES) if tenant.admin_agents_group else 1
    items = []
    for name in CUSTOMER_NAMES[:count]:
        slug = name.lower().replace(" ", "")
        customer_id = _stable_guid("customer", tenant.id, name)
        items.append({
            "id": customer_id,
            "companyProfile": {
                "tenantId": customer_id,
                "domain": f"{slug}.onmicrosoft.com",
                "companyName": name,
                "links": {"self": {"uri": f"/customers/{customer_id}/profiles/company",
                                   "method": "GET", "headers": []}},
                "attributes": {"objectType": "CustomerCompanyProfile"},
            },
            "relationshipToPartner": "reseller",
            "allowDelegatedAccess": True,
            "customDomains": [f"{slug}.example"],
            "links": {"self": {"uri": f"/customers/{customer_id}", "method": "GET",
                               "headers": []}},
            "attributes": {"objectType": "Customer"},
        })
    return items
