"""Sign in through devstack's Entra pages without a browser, posting their forms as one would.

It follows sign-in → MFA (typing the code shown in `#dev-otp`) → consent, and stops at the
answer for the client's redirect URI without delivering it:

    flow = app.initiate_auth_code_flow(scopes, redirect_uri=uri, response_mode="form_post")
    response = sign_in(flow["auth_uri"], "admin@contoso.example")
    result = app.acquire_token_by_auth_code_flow(flow, response.params)

`complete_sign_in` is the same for `response_mode=query` and returns the redirect URL. An error
the authority shows as a page (unknown app, unregistered redirect URI, wrong password) raises
`SignInError`; an error it sends to the client (`access_denied`, ...) is a normal response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from devstack import seed

MAX_STEPS = 12
TIMEOUT = 10
CONSENT_CALLBACK = "http://localhost:8765/consent/callback"  # loopback: any port is registered


class SignInError(Exception):
    """The authority stopped on a page instead of answering the client."""

    def __init__(self, message: str, code: int | None = None, html: str = ""):
        super().__init__(f"AADSTS{code}: {message}" if code else message)
        self.code, self.message, self.html = code, message, html


@dataclass(frozen=True)
class AuthResponse:
    """What the authority hands the browser for the client's redirect URI."""

    url: str  # the redirect URI; with the response in its query/fragment for GET
    method: str  # "GET" (query, fragment) or "POST" (form_post)
    params: dict[str, str]  # code, state, ... or error, error_description, error_uri, state

    @property
    def error(self) -> str | None:
        return self.params.get("error")

    @property
    def code(self) -> str | None:
        return self.params.get("code")

    def deliver(self, session: requests.Session | None = None, **kwargs) -> requests.Response:
        """Take the response to the client like the browser would (redirects not followed)."""
        http = session or requests.Session()
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("allow_redirects", False)
        if self.method == "POST":
            return http.post(self.url, data=self.params, **kwargs)
        return http.get(self.url, **kwargs)


def sign_in(
    auth_url: str,
    username: str,
    password: str = seed.PASSWORD,
    *,
    consent: bool = True,
    on_behalf: bool = True,
    otp: str | None = None,
    session: requests.Session | None = None,
    verify: str | bool | None = None,
) -> AuthResponse:
    """Go through the pages for `auth_url` as `username`; returns the response for the client.

    `consent` accepts (or with False, cancels) the consent page if one is shown; `on_behalf`
    ticks "Consent on behalf of your organization". `otp` overrides the code typed on the MFA
    page. Pass `session` to keep the authority's sign-in cookie between calls (single sign-on).
    """
    http = session or requests.Session()
    authority = urlsplit(auth_url).netloc
    kwargs: dict = {"timeout": TIMEOUT, "allow_redirects": False}
    if verify is not None:
        kwargs["verify"] = verify
    response = http.get(auth_url, **kwargs)
    last_form = None
    for _ in range(MAX_STEPS):
        if response.is_redirect:
            target = urljoin(response.url, response.headers["Location"])
            if urlsplit(target).netloc != authority:
                return AuthResponse(target, "GET", _response_params(target))
            response = http.get(target, **kwargs)
            continue
        page = _Page.parse(response.text)
        form = page.form()
        if form is None:
            raise _page_error(page, response)
        if form.id == "hiddenform":  # response_mode=form_post
            return AuthResponse(urljoin(response.url, form.action), "POST", form.values())
        if last_form == form.id and page.text("error"):
            raise SignInError(page.text("error"), html=response.text)
        data = form.values()
        if "password" in form.inputs:
            data.update(username=username, password=password)
        elif "otp" in form.inputs:
            data["otp"] = otp if otp is not None else page.text("dev-otp")
        elif "account" in form.buttons:
            wanted = username.strip().lower()
            data["account"] = wanted if wanted in form.buttons["account"] else "other"
        elif "accept" in form.buttons:
            if consent:
                data["accept"] = "accept"
                if on_behalf:
                    data["consent_on_behalf"] = "on"
            else:
                data["cancel"] = "cancel"
        else:
            raise SignInError(f"unexpected page with form {form.id!r}", html=response.text)
        last_form = form.id
        response = http.post(urljoin(response.url, form.action), data=data, **kwargs)
    raise SignInError(f"no answer for the client after {MAX_STEPS} pages")


def complete_sign_in(
    auth_url: str,
    username: str,
    password: str = seed.PASSWORD,
    consent: bool = True,
    session: requests.Session | None = None,
    *,
    on_behalf: bool = True,
) -> str:
    """`sign_in` for `response_mode=query`: the URL the browser is redirected to (not fetched)."""
    response = sign_in(auth_url, username, password, consent=consent, on_behalf=on_behalf,
                       session=session)
    if response.method != "GET":
        raise ValueError("the authority answered with response_mode=form_post; use sign_in()")
    return response.url


def consent_with_msal(authority_host: str, client_id: str, client_secret: str,
                      user: str = seed.PARTNER_ADMIN_UPN, *,
                      tenant: str = seed.PARTNER_TENANT_ID, verify: str | None = None) -> dict:
    """A real consent for Partner Center: MSAL's auth-code flow, the pages completed by
    `sign_in`. Returns MSAL's token response (refresh and access token)."""
    import msal

    app = msal.ConfidentialClientApplication(
        client_id, client_credential=client_secret, authority=f"{authority_host}/{tenant}",
        instance_discovery=False)
    flow = app.initiate_auth_code_flow([seed.PARTNER_CENTER_SCOPE],
                                       redirect_uri=CONSENT_CALLBACK, response_mode="form_post")
    result = app.acquire_token_by_auth_code_flow(
        flow, sign_in(flow["auth_uri"], user, verify=verify).params)
    if "refresh_token" not in result:
        raise AssertionError(f"consent failed: {result.get('error_description')}")
    return result


def auth_response(redirect_url: str) -> dict[str, str]:
    """The parameters of a redirect URL, as MSAL's `acquire_token_by_auth_code_flow` wants."""
    return _response_params(redirect_url)


def _response_params(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return dict(parse_qsl(parts.fragment or parts.query, keep_blank_values=True))


def _page_error(page: _Page, response: requests.Response) -> SignInError:
    code_text = page.text("error-code")
    code = int(code_text[6:]) if code_text.startswith("AADSTS") and code_text[6:].isdigit() \
        else None
    message = page.text("error-message") or f"HTTP {response.status_code} without a form"
    return SignInError(message, code, response.text)


@dataclass
class _Form:
    id: str
    action: str
    inputs: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # name: type, value
    buttons: dict[str, list[str]] = field(default_factory=dict)  # name: values

    def values(self) -> dict[str, str]:
        """What the browser sends: hidden and text values, checked boxes, no buttons."""
        return {name: value for name, (kind, value, checked) in self.inputs.items()
                if kind not in ("checkbox", "radio", "submit") or checked}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self._texts: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []  # (tag, id) of open elements

    @classmethod
    def parse(cls, html: str) -> _Page:
        page = cls()
        page.feed(html)
        page.close()
        return page

    def form(self) -> _Form | None:
        return self.forms[0] if self.forms else None

    def text(self, element_id: str) -> str:
        return " ".join("".join(self._texts.get(element_id, [])).split())

    def handle_starttag(self, tag, attrs):
        attr = {k: v or "" for k, v in attrs}
        if tag not in ("input", "br", "img", "meta", "link"):
            self._open.append((tag, attr.get("id")))
        if tag == "form":
            self.forms.append(_Form(attr.get("id", ""), attr.get("action", "")))
        elif tag == "input" and self.forms and attr.get("name"):
            kind = attr.get("type", "text").lower()
            if kind == "submit":
                self.forms[-1].buttons.setdefault(attr["name"], []).append(attr.get("value", ""))
            else:
                self.forms[-1].inputs[attr["name"]] = (kind, attr.get("value", ""),
                                                       "checked" in attr)
        elif tag == "button" and self.forms and attr.get("name"):
            self.forms[-1].buttons.setdefault(attr["name"], []).append(attr.get("value", ""))

    def handle_endtag(self, tag):
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break

    def handle_data(self, data):
        for _, element_id in self._open:
            if element_id:
                self._texts.setdefault(element_id, []).append(data)
