"""Placeholder until the Partner Center stub lands."""

from flask import Flask


def create_app(ctx) -> Flask:
    return Flask("devstack.partner_center")
