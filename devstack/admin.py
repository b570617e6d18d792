"""Control endpoints under `DEVSTACK_ADMIN_URL`: revoke, clock, faults, MFA policy, vault
settings, request counts (`GET /stats`, `POST /stats/reset`), RBAC, reset, and a state view.

`POST /rbac` changes the vaults' role assignments (`devstack.rbac`), as `az role assignment`
does in Azure. The body is a JSON object:

    {"op": "add" | "remove", "principalId": "<object id>",
     "roleDefinitionId": "<role id, .../roleDefinitions/<id> or name>", "scope": "<ARM id>"}
    {"op": "list", "principalId": "<object id>"}       (principalId optional)

`scope` is a vault (`DEVSTACK_VAULT_SCOPE`, `DEVSTACK_CONFIG_VAULT_SCOPE` in the env file), one
secret (`<vault scope>/secrets/<name>`), the resource group or the subscription. `add` and
`remove` answer `{"assignment": {...}, "changed": bool}`; `list` and `GET /rbac` answer
`{"assignments": [...]}` with ARM's field names. `POST /reset` restores the seeded assignments.
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import BadRequest

from .context import Context
from .faults import SERVICES
from .rbac import RbacError

MAX_ADVANCE_DAYS = 3650


def create_app(ctx: Context) -> Flask:
    app = Flask("devstack.admin")

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object.")
        return data

    @app.errorhandler(400)
    @app.errorhandler(404)
    @app.errorhandler(405)
    def http_error(exc):
        return jsonify(error=getattr(exc, "name", "error"), message=exc.description), exc.code

    @app.get("/")
    @app.get("/healthz")
    def state():
        return jsonify(
            status="ok",
            urls=ctx.urls,
            clock_offset_days=ctx.clock.offset_seconds / 86400,
            faults=ctx.faults.snapshot(),
            faults_injected=ctx.faults.injected,
            answers_lost=ctx.faults.answers_lost,
            vaults={name: settings.as_dict() for name, settings in ctx.vaults.items()},
        )

    @app.post("/revoke")
    def revoke():
        user = body().get("user")
        if not isinstance(user, str) or "@" not in user:
            raise BadRequest("'user' must be a user principal name such as admin@contoso.example.")
        if ctx.revoke_hook is None:
            raise BadRequest("No authority is running in this devstack.")
        revoked = ctx.revoke_hook(user)
        return jsonify(user=user, revoked_refresh_tokens=revoked)

    @app.post("/clock")
    def clock():
        days = body().get("advance_days")
        if isinstance(days, bool) or not isinstance(days, int | float):
            raise BadRequest("'advance_days' must be a number.")
        if not 0 <= days <= MAX_ADVANCE_DAYS:
            raise BadRequest(f"'advance_days' must be between 0 and {MAX_ADVANCE_DAYS}.")
        ctx.clock.advance(days * 86400)
        return jsonify(clock_offset_days=ctx.clock.offset_seconds / 86400)

    @app.post("/faults")
    def faults():
        data = body()
        service, status, rate = data.get("service"), data.get("status"), data.get("rate", 1)
        if service not in SERVICES:
            raise BadRequest(f"'service' must be one of {', '.join(SERVICES)}.")
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise BadRequest("'rate' must be a number between 0 and 1.")
        try:
            ctx.faults.set(service, status, float(rate))
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return jsonify(faults=ctx.faults.snapshot())

    @app.post("/mfa")
    def mfa():
        """`{"tenant": "contoso.example", "required": false}`: the tenant's Conditional Access
        MFA policy (required by default)."""
        data = body()
        tenant, required = data.get("tenant"), data.get("required")
        if not isinstance(tenant, str) or not tenant or not isinstance(required, bool):
            raise BadRequest("'tenant' must be a tenant domain or id and 'required' true or "
                             "false.")
        if ctx.mfa_policy_hook is None:
            raise BadRequest("No authority is running in this devstack.")
        try:
            tenant_id = ctx.mfa_policy_hook(tenant, required)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return jsonify(tenant=tenant_id, mfa_required=required)

    @app.post("/vaults")
    def vaults():
        """`{"vault": "main", "purge_protection": bool, "realistic": bool}`: change a vault."""
        data = body()
        name = data.get("vault", "main")
        settings = ctx.vaults.get(name) if isinstance(name, str) else None
        if settings is None:
            raise BadRequest(f"'vault' must be one of {', '.join(ctx.vaults) or 'none'}.")
        changes = {k: data[k] for k in ("purge_protection", "realistic") if k in data}
        if any(not isinstance(v, bool) for v in changes.values()):
            raise BadRequest("'purge_protection' and 'realistic' must be true or false.")
        for key, value in changes.items():
            setattr(settings, key, value)
        return jsonify(vault=name, **settings.as_dict())

    @app.get("/stats")
    def stats():
        return jsonify(ctx.stats.snapshot())

    @app.post("/stats/reset")
    def stats_reset():
        ctx.stats.reset()
        return jsonify(ctx.stats.snapshot())

    @app.get("/rbac")
    def rbac_list():
        return jsonify(assignments=[a.to_json() for a in ctx.rbac.list()])

    @app.post("/rbac")
    def rbac_change():
        data = body()
        op = data.get("op")
        try:
            if op == "list":
                principal = data.get("principalId")
                if principal is not None and not isinstance(principal, str):
                    raise RbacError("'principalId' must be an object id.")
                return jsonify(assignments=[a.to_json() for a in ctx.rbac.list(principal)])
            args = (data.get("principalId"), data.get("roleDefinitionId"), data.get("scope"))
            if op in ("add", "remove"):
                change = ctx.rbac.add if op == "add" else ctx.rbac.remove
                assignment, changed = change(*args)
                return jsonify(assignment=assignment.to_json(), changed=changed)
        except RbacError as exc:
            raise BadRequest(str(exc)) from exc
        raise BadRequest("'op' must be add, remove or list.")

    @app.post("/reset")
    def reset():
        ctx.reset()
        return jsonify(status="reset")

    return app

