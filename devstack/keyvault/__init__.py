"""Placeholder until the keyvault emulator lands."""

from flask import Flask


def create_app(ctx) -> Flask:
    return Flask("devstack.keyvault")
