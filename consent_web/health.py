"""`/healthz` for App Service's health check: the process answers; nothing secret is touched."""

from __future__ import annotations

from flask import Blueprint, jsonify

from consent_web import site

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok", configured=site.state().settings is not None)
