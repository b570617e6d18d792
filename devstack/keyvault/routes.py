"""The secrets data-plane operations, one route each, as the Key Vault REST reference names them.

Routes run after the pipeline in `api.py` (auth, api-version, limits); each validates its input
completely before calling the store once. The vault's settings (`settings.py`) decide the
recovery level, whether a purge is allowed, and realistic delete timing and paging.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from . import backup, bundles, errors, paging, validation
from .settings import Deletions, VaultSettings
from .store import SecretMissing, Store


def register(app: Flask, store: Store, name: str, settings: VaultSettings,
             deletions: Deletions) -> None:
    def leveled(body: dict) -> dict:
        """The vault's recovery level on a bundle, or on every item of a page."""
        items = body["value"] if isinstance(body.get("value"), list) else [body]
        for item in items:
            if "attributes" in item:
                item["attributes"]["recoveryLevel"] = settings.recovery_level
        return body

    def not_being_deleted(secret: str) -> None:
        if deletions.in_progress(secret):
            raise errors.being_deleted(secret)

    def latest_or_version(secret: str, version: str | None):
        validation.name(secret)
        if version is not None and not validation.is_version(version):
            raise SecretMissing(secret, version)
        return store.get(secret, version)

    @app.put("/secrets/<name>", endpoint="set_secret")
    def set_secret(name: str):
        validation.name(name)
        params = validation.set_parameters(request.get_data())
        not_being_deleted(name)
        version = store.set(
            name, params.value, content_type=params.content_type, tags=params.tags,
            enabled=params.enabled, not_before=params.not_before, expires=params.expires,
        )
        return leveled(bundles.secret_bundle(g.base, version))

    @app.put("/secrets/")
    def set_without_name():
        # Key Vault answers a PUT without a name as an unknown resource, not a wrong method
        raise errors.not_found_path()

    @app.get("/secrets/<name>")
    @app.get("/secrets/<name>/")
    @app.get("/secrets/<name>/<version>")
    def get_secret(name: str, version: str | None = None):
        found = latest_or_version(name, version)
        if not found.enabled:
            raise errors.disabled("get")
        if request.args.get("outContentType") is not None:
            # only a certificate's secret converts (PFX <-> PEM); devstack holds no certificates
            raise errors.bad_parameter(
                "outContentType is only supported for secrets backing a certificate; "
                f"{found.name} is not a certificate.")
        return leveled(bundles.secret_bundle(g.base, found))

    @app.patch("/secrets/<name>/")
    @app.patch("/secrets/<name>/<version>")
    def update_secret(name: str, version: str | None = None):
        latest_or_version(name, version)
        changes = validation.update_parameters(request.get_data())
        updated = store.update(name, version, changes)
        return leveled(bundles.secret_bundle(g.base, updated, with_value=False))

    @app.get("/secrets")
    def list_secrets():
        size = validation.max_results(request.args)
        items = store.list_latest(paging.after(request.args), size + 1)
        return leveled(paging.page(
            items, lambda v: v.name.lower(), g.base, "/secrets", request.args,
            lambda v: bundles.secret_item(g.base, v, versioned=False),
            short=settings.realistic))

    @app.get("/secrets/<name>/versions")
    def list_versions(name: str):
        validation.name(name)
        size = validation.max_results(request.args)
        items = store.list_versions(name, paging.after(request.args), size + 1)
        return leveled(paging.page(
            items, lambda v: v.version, g.base, f"/secrets/{name}/versions", request.args,
            lambda v: bundles.secret_item(g.base, v, versioned=True),
            short=settings.realistic))

    @app.delete("/secrets/<name>")
    def delete_secret(name: str):
        validation.name(name)
        body = leveled(bundles.deleted_bundle(g.base, *store.delete(name)))
        if settings.realistic:
            deletions.start(name)
        return body

    @app.post("/secrets/<name>/backup")
    def backup_secret(name: str):
        validation.name(name)
        return {"value": backup.seal(store.versions(name))}

    @app.post("/secrets/restore")
    def restore_secret():
        versions = backup.unseal(validation.restore_blob(request.get_data()))
        not_being_deleted(versions[0].name)
        return leveled(bundles.secret_bundle(g.base, store.restore(versions), with_value=False))

    @app.get("/deletedsecrets")
    def list_deleted():
        size = validation.max_results(request.args)
        items = store.list_deleted(paging.after(request.args), size + 1)
        hidden = deletions.names()
        items = [item for item in items if item[0].name.lower() not in hidden]
        return leveled(paging.page(
            items, lambda item: item[0].name.lower(), g.base, "/deletedsecrets", request.args,
            lambda item: bundles.deleted_item(g.base, *item), short=settings.realistic))

    @app.get("/deletedsecrets/<name>")
    def get_deleted(name: str):
        validation.name(name)
        if deletions.in_progress(name):
            raise errors.deleted_secret_not_found(name)
        version, deletion = store.get_deleted(name)
        if not version.enabled:
            raise errors.disabled("get")
        return leveled(bundles.deleted_bundle(g.base, version, deletion))

    @app.delete("/deletedsecrets/<name>")
    def purge_deleted(name: str):
        validation.name(name)
        not_being_deleted(name)
        if settings.purge_protection:
            store.get_deleted(name)  # an unknown name is still 404
            raise errors.purge_protected(name_of_vault())
        store.purge(name)
        return Response(status=204)

    @app.post("/deletedsecrets/<name>/recover")
    def recover_deleted(name: str):
        validation.name(name)
        not_being_deleted(name)
        return leveled(bundles.secret_bundle(g.base, store.recover(name), with_value=False))

    def name_of_vault() -> str:
        return g.base.split("://", 1)[1].split(".", 1)[0].split(":", 1)[0] or name
