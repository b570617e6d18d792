"""Why a credential is not active, in plain words, and what fixes it.

A reason is stored as a short code (`AADSTS50173`, or one of the broker's own names such as
`no-mfa`) in the current version's `reason` tag (the format is `broker.credentials.Reason`);
the words are looked up here when it is shown, so the site, the CLI and the notifications all
say the same thing and a tag never holds more than a few dozen characters.

Each explanation has the action in plain words (what a person does, on the site or in Entra)
and the CLI command that does it, kept apart so that adapters show the one that fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    meaning: str   # what happened, in words an operator understands
    action: str    # what fixes it
    command: str | None = None  # the CLI equivalent; "{id}" is the credential id


INVITE = "broker invite {id}"
EDIT_APP_CMD = "broker credentials edit {id} --client-secret-stdin --secret-expires-on DATE"
CONSENT_AGAIN = ("An admin of the partner tenant must consent again: send them an invite link, "
                 "or sign in with Microsoft yourself if that is you.")
RENEW_APP_STEPS = (
    "Create a new client secret for the app in Microsoft Entra ID (App registrations, "
    "Certificates & secrets), then enter it with Edit; the stored token is kept.")

# what each AADSTS code means to an operator, and what they should do about it
AADSTS: dict[int, Explanation] = {
    700082: Explanation("the refresh token expired after 90 days without use", CONSENT_AGAIN,
                        INVITE),
    50173: Explanation("the grant was revoked (a password change, or an admin revoked the "
                       "user's sessions)", CONSENT_AGAIN, INVITE),
    70000: Explanation("the refresh token is no longer valid", CONSENT_AGAIN, INVITE),
    70008: Explanation("the refresh token or authorization code has expired", CONSENT_AGAIN,
                       INVITE),
    65001: Explanation("the app has not been consented to in the partner tenant",
                       "An admin of the partner tenant must consent: send them an invite link.",
                       INVITE),
    50076: Explanation("multi-factor authentication is now required",
                       "An admin who signs in with MFA must consent again.", INVITE),
    50079: Explanation("the user must register for multi-factor authentication",
                       "Register MFA for the admin, then have them consent again.", INVITE),
    54005: Explanation("the authorization code was already redeemed",
                       "Start the consent again; a sign-in code works once."),
    7000215: Explanation("the client secret is not valid",
                         "Enter the app's current client secret with Edit (or fix "
                         "BROKER_CPV_CLIENT_SECRET for the CPV app); the stored token is kept.",
                         EDIT_APP_CMD),
    7000222: Explanation("the app's client secret has expired", RENEW_APP_STEPS, EDIT_APP_CMD),
    700007: Explanation("the refresh token was issued to a different app than the "
                        "credential's client id",
                        "Check the credential's client id: it must be the app the admin "
                        "consented to (the stored token is kept); if the app changed, an admin "
                        "must consent again.", "broker credentials edit {id} --client-id GUID"),
    700016: Explanation("the application was not found in the tenant",
                        "Check the client id, and that the app is multi-tenant and consented "
                        "in this tenant.", "broker credentials edit {id} --client-id GUID"),
    90002: Explanation("the tenant was not found",
                       "Check the credential's tenant id or domain with Edit.",
                       "broker credentials edit {id} --tenant-id TENANT"),
    50105: Explanation("the user is not an Admin Agent of the partner tenant",
                       "An admin in the partner tenant's Admin Agents group must consent again.",
                       INVITE),
}

# the broker's own reasons: found by its checks, or derived from dates
BROKER: dict[str, Explanation] = {
    "not-consented": Explanation(
        "registered, but nobody has consented yet",
        "An admin of the partner tenant signs in with MFA and consents: sign in with Microsoft "
        "yourself, or send them an invite link.", INVITE),
    "app-changed": Explanation(
        "the tenant or app was changed, so the earlier consent no longer applies",
        CONSENT_AGAIN, INVITE),
    "token-expired": Explanation(
        "the refresh token passed its 90-day lifetime without being renewed", CONSENT_AGAIN,
        INVITE),
    "token-expiring": Explanation(
        "the refresh token expires soon and has not been renewed",
        "Renew it now with Rotate now, and check that the rotation worker runs (it renews "
        "tokens every night).", "broker rotate {id}"),
    "secret-expired": Explanation("the app's client secret has expired", RENEW_APP_STEPS,
                                  EDIT_APP_CMD),
    "secret-expiring": Explanation(
        "the app's client secret expires soon",
        "Create a new client secret for the app in Microsoft Entra ID (App registrations, "
        "Certificates & secrets) and enter it with Edit before the old one expires.",
        EDIT_APP_CMD),
    "token-and-secret-expiring": Explanation(
        "both the refresh token and the app's client secret expire soon",
        "Enter a new client secret with Edit, then renew the token with Rotate now.",
        EDIT_APP_CMD),
    "no-mfa": Explanation(
        "the token was obtained without multi-factor authentication, which Partner Center "
        "refuses", "An admin must consent again, signing in with MFA.", INVITE),
    "partner-center": Explanation(
        "Partner Center refused the token",
        "Check that the consenting user still has the Admin Agent role in Partner Center, then "
        "validate again.", "broker validate {id}"),
    "rotation-failed": Explanation(
        "renewing the token kept failing, so it was set aside",
        "Look at the broker's log for this credential, fix the cause, then rotate it.",
        "broker rotate {id}"),
    "unknown": Explanation(
        "the last renewal or validation failed, and no reason was recorded",
        "Validate it to find out why.", "broker validate {id}"),
}

CODE = re.compile(r"^(AADSTS[0-9]{1,9}|[a-z][a-z-]{1,40})$")


def explain(code: str, *, needs_consent: bool = False) -> Explanation:
    """The words for `code`; an AADSTS code we have no words for is described by what the
    broker made of it (a dead grant when `needs_consent`, otherwise a refused app)."""
    if code.startswith("AADSTS"):
        try:
            number = int(code[len("AADSTS"):])
        except ValueError:
            number = -1
        if number in AADSTS:
            return AADSTS[number]
        if needs_consent:
            return Explanation("Entra ID refused the refresh token", CONSENT_AGAIN, INVITE)
        return Explanation("Entra ID refused the app's sign-in",
                           "Check the app registration (client id, client secret, tenant), "
                           "then validate again.", "broker validate {id}")
    return BROKER.get(code, BROKER["unknown"])


def is_code(text: object) -> bool:
    return isinstance(text, str) and CODE.fullmatch(text) is not None
