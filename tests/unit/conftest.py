"""The consent site on a FakeBroker, for every web unit test (`site`, `web`).

A module seeds the credentials its tests share with `pytestmark = pytest.mark.seed("contoso",
active=False)` (the arguments of `FakeBroker.seed`).
"""

from __future__ import annotations

import pytest

from tests.unit.web_fakes import Web


@pytest.fixture
def site(request) -> Web:
    """The site with nobody signed in."""
    web = Web()
    for marker in request.node.iter_markers("seed"):
        web.broker.seed(*marker.args, **marker.kwargs)
    return web


@pytest.fixture
def web(site: Web) -> Web:
    """The site with an operator signed in."""
    site.sign_in()
    return site
