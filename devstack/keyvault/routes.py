"""The secrets data-plane operations, one route each, as the Key Vault REST reference names them.

Routes run after the pipeline in `api.py` (auth, api-version, limits); each validates its input
completely before calling the store once.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from . import backup, bundles, errors, paging, validation
from .store import SecretMissing, Store


def register(app: Flask, store: Store) -> None:
    def latest_or_version(name: str, version: str | None):
        validation.name(name)
        if version is not None and not validation.is_version(version):
            raise SecretMissing(name, version)
        return store.get(name, version)

    @app.put("/secrets/<name>", endpoint="set_secret")
    def set_secret(name: str):
        validation.name(name)
        params = validation.set_parameters(request.get_data())
        version = store.set(
            name, params.value, content_type=params.content_type, tags=params.tags,
            enabled=params.enabled, not_before=params.not_before, expires=params.expires,
        )
        return bundles.secret_bundle(g.base, version)

    @app.get("/secrets/<name>")
    @app.get("/secrets/<name>/")
    @app.get("/secrets/<name>/<version>")
    def get_secret(name: str, version: str | None = None):
        found = latest_or_version(name, version)
        if not found.enabled:
            raise errors.disabled("get")
        return bundles.secret_bundle(g.base, found)

    @app.patch("/secrets/<name>/")
    @app.patch("/secrets/<name>/<version>")
    def update_secret(name: str, version: str | None = None):
        latest_or_version(name, version)
        changes = validation.update_parameters(request.get_data())
        updated = store.update(name, version, changes)
        return bundles.secret_bundle(g.base, updated, with_value=False)

    @app.get("/secrets")
    def list_secrets():
        size = validation.max_results(request.args)
        items = store.list_latest(paging.after(request.args), size + 1)
        return paging.page(items, lambda v: v.name.lower(), g.base, "/secrets", request.args,
                           lambda v: bundles.secret_item(g.base, v, versioned=False))

    @app.get("/secrets/<name>/versions")
    def list_versions(name: str):
        validation.name(name)
        size = validation.max_results(request.args)
        items = store.list_versions(name, paging.after(request.args), size + 1)
        return paging.page(items, lambda v: v.version, g.base, f"/secrets/{name}/versions",
                           request.args, lambda v: bundles.secret_item(g.base, v, versioned=True))

    @app.delete("/secrets/<name>")
    def delete_secret(name: str):
        validation.name(name)
        return bundles.deleted_bundle(g.base, *store.delete(name))

    @app.post("/secrets/<name>/backup")
    def backup_secret(name: str):
        validation.name(name)
        return {"value": backup.seal(store.versions(name))}

    @app.post("/secrets/restore")
    def restore_secret():
        versions = backup.unseal(validation.restore_blob(request.get_data()))
        return bundles.secret_bundle(g.base, store.restore(versions), with_value=False)

    @app.get("/deletedsecrets")
    def list_deleted():
        size = validation.max_results(request.args)
        items = store.list_deleted(paging.after(request.args), size + 1)
        return paging.page(items, lambda item: item[0].name.lower(), g.base, "/deletedsecrets",
                           request.args, lambda item: bundles.deleted_item(g.base, *item))

    @app.get("/deletedsecrets/<name>")
    def get_deleted(name: str):
        validation.name(name)
        return bundles.deleted_bundle(g.base, *store.get_deleted(name))

    @app.delete("/deletedsecrets/<name>")
    def purge_deleted(name: str):
        validation.name(name)
        store.purge(name)
        return Response(status=204)

    @app.post("/deletedsecrets/<name>/recover")
    def recover_deleted(name: str):
        validation.name(name)
        return bundles.secret_bundle(g.base, store.recover(name), with_value=False)
