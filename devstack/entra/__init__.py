"""Placeholder until the entra emulator lands."""

from flask import Flask


def create_app(ctx) -> Flask:
    return Flask("devstack.entra")
