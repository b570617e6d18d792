"""Secret identifier URLs, as consumers and operators type them: any text is either parsed into
exactly its parts or refused as InvalidInput, and the resolver never answers with anything
but a token or a broker error."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from broker.errors import BrokerError, InvalidInput, NeedsConsent, TransientFailure
from broker.resolver import TokenResolver
from broker.vault import parse_secret_id
from tests.support.broker import consented_credential, make_broker

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
PORT = re.compile(r"[0-9]{1,5}")
FUNCTION_FIXTURES = [HealthCheck.function_scoped_fixture]

# text that is URL-shaped enough to reach the SDK's parser: scheme, host, path pieces
piece = st.text(max_size=12)
url_like = st.builds(
    lambda scheme, host, collection, name, version, tail:
        f"{scheme}://{host}/{collection}/{name}" + (f"/{version}" if version is not None else "")
        + tail,
    st.sampled_from(["https", "HTTPS", "http", "", "ftp", "https:"]),
    st.one_of(piece, st.from_regex(HOST, fullmatch=True), st.just("myvault.vault.azure.net")),
    st.sampled_from(["secrets", "Secrets", "keys", "", "secrets/"]),
    piece, st.none() | piece, st.sampled_from(["", "/", "//", "?x=1", "#f", "/extra"]),
)
any_text = st.one_of(st.text(max_size=80), url_like)


def expected_parts(url: str) -> tuple[str, str, str | None] | None:
    """What a correct parse of `url` yields (vault URL, name, version), or None when `url` is
    not a secret identifier at all."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    netloc = parts.netloc.lower()
    host, _, port_text = netloc.partition(":")
    if parts.scheme != "https" or parts.query or parts.fragment or "@" in netloc:
        return None
    if not HOST.fullmatch(host) or len(host) > 253:
        return None
    if port_text and not (PORT.fullmatch(port_text) and port and 0 < port < 65536):
        return None
    segments = parts.path.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()  # "/secrets/<name>/" is the latest version too
    if not 2 <= len(segments) <= 3 or segments[0] != "secrets" or "" in segments:
        return None
    vault_url = f"https://{host}" + (f":{port}" if port_text else "")
    return vault_url, segments[1], segments[2] if len(segments) == 3 else None


@settings(max_examples=200, deadline=None)
@given(st.from_regex(HOST, fullmatch=True).filter(lambda h: len(h) <= 253),
       st.none() | st.integers(1, 65535),
       st.from_regex(r"[0-9a-zA-Z-]{1,127}", fullmatch=True),
       st.none() | st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
       st.booleans())
def test_a_well_formed_identifier_parses_into_exactly_its_parts(host, port, name, version,
                                                                trailing_slash):
    vault_url = f"https://{host}" + (f":{port}" if port else "")
    url = f"{vault_url}/secrets/{name}" + (f"/{version}" if version else "") \
        + ("/" if trailing_slash else "")
    ident = parse_secret_id(url)
    assert (ident.vault_url, ident.name, ident.version) == (vault_url, name, version)


@settings(max_examples=300, deadline=None)
@given(any_text)
@example("https://a..b/secrets/rt-x")
@example("https://ÆÂ\\/secrets/rt-x")
@example("https://user@myvault.vault.azure.net/secrets/rt-x")
@example("https://[::1]:8443/secrets/rt-x")
@example("https://myvault.vault.azure.net/secrets//rt-x")
@example("https://myvault.vault.azure.net/secrets/rt-x/abc;def")
def test_any_text_is_a_correct_parse_or_invalid_input(text):
    try:
        ident = parse_secret_id(text)
    except InvalidInput as exc:
        assert exc.errors.get("url")
        return
    assert expected_parts(text) == (ident.vault_url, ident.name, ident.version), text


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_the_resolver_refuses_what_is_no_identifier_with_invalid_input(text):
    try:
        parse_secret_id(text)
    except InvalidInput:
        pass
    else:
        return  # a parsed URL would be fetched: covered against the vault below
    resolver = TokenResolver(refresh_interval=60)
    with pytest.raises(InvalidInput):
        resolver.refresh_token(text)
    with pytest.raises(InvalidInput):
        resolver.access_token(text, "https://api.partnercenter.microsoft.com/.default")


@pytest.mark.parametrize("url", ["https://a..b/secrets/rt-x", "https://ÆÂ\\/secrets/rt-x"])
def test_the_resolver_answers_a_malformed_host_with_invalid_input(url):
    with pytest.raises(InvalidInput):
        TokenResolver(refresh_interval=60).refresh_token(url)


@pytest.fixture
def stored(devstack, tmp_path):
    """A consented credential on the session devstack, and a resolver for its vault."""
    broker = make_broker(devstack, tmp_path)
    credential = consented_credential(broker)
    resolver = TokenResolver(refresh_interval=60)
    yield broker, credential, resolver
    resolver.close()


# lone surrogates included: they are what Python makes of undecodable bytes, e.g. in argv
segment = st.text(st.characters(exclude_characters="/?#"), max_size=16)


@settings(max_examples=150, deadline=None, suppress_health_check=FUNCTION_FIXTURES)
@given(prefix=st.sampled_from(["rt-", "cs-", "", "rt-<id>", "cs-<id>"]), name=segment,
       version=st.none() | st.just("<version>") | segment, slash=st.booleans())
def test_the_resolver_answers_any_identifier_on_the_vault_with_a_token_or_a_broker_error(
        stored, prefix, name, version, slash):
    broker, credential, resolver = stored
    prefix = prefix.replace("<id>", credential.id)
    if version == "<version>":
        version = credential.latest.version
    url = f"{broker.vault.url}/secrets/{prefix}{name}" + (f"/{version}" if version else "") \
        + ("/" if slash else "")
    try:
        value = resolver.refresh_token(url)
    except (InvalidInput, NeedsConsent):  # CredentialNotFound is an InvalidInput
        return
    except TransientFailure as exc:  # the vault is up: nothing here may look transient
        pytest.fail(f"{url!r}: {exc}")
    except BrokerError as exc:
        pytest.fail(f"{url!r}: unexpected {type(exc).__name__}: {exc}")
    # only the credential's own secrets resolve, and to what the vault holds
    ident = parse_secret_id(url)
    assert ident.name == f"rt-{credential.id}", url
    assert value == broker.vault.read_token(credential.id, ident.version)[0]


@pytest.mark.parametrize("path", ["rt-\ud800", "rt-x/\udcff"], ids=["name", "version"])
def test_the_resolver_answers_text_it_cannot_encode_with_invalid_input(devstack, path):
    url = f"{devstack.vault_url.rstrip('/')}/secrets/{path}"
    with pytest.raises(InvalidInput):
        TokenResolver(refresh_interval=60).refresh_token(url)
