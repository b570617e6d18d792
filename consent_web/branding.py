"""Who the site says it is: BROKER_DISPLAY_NAME, shown to partner admins and in the header."""

from __future__ import annotations

DEFAULT_DISPLAY_NAME = "Partner Token Broker"


def display_name(settings) -> str:
    """The vendor's or operator's name from BROKER_DISPLAY_NAME; never a host name, which tells
    a partner admin nothing about who asks for their consent."""
    return (getattr(settings, "display_name", None) or DEFAULT_DISPLAY_NAME) if settings \
        else DEFAULT_DISPLAY_NAME
