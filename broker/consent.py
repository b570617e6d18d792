"""Consent: an admin of the partner tenant signs in (with MFA) and the broker keeps the token.

MSAL runs the auth-code flow and checks state, PKCE and the id token's nonce. What MSAL cannot
know is checked here before anything is stored: the token is for the credential's tenant, the
sign-in used MFA, and the user is an Admin Agent. Only then is the refresh token written (under
the credential's lease, so it lands after any rotation in progress and wins over it) and read
back; a consent is never reported done before that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.credentials import Source
from broker.errors import Conflict, ConsentFailed, CredentialNotFound, InvalidInput
from broker.fencing import settle
from broker.identity import ARM_SCOPE, GRAPH_SCOPE, PARTNER_CENTER_SCOPE
from broker.logs import bound, get_logger

log = get_logger(__name__)

# directory role template ids as they appear in `wids` (the same in every tenant)
ROLE_NAMES = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8": "Helpdesk Administrator",
    "f28a1f50-f6e7-4571-818b-6a12f2af6b6c": "SharePoint Administrator",
    "29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator",
    "fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator",
    "194ae4cb-b126-40b2-bd5b-6091b380977d": "Security Administrator",
    "b0f54661-2d74-4c50-afa3-1ec803f12efe": "Billing Administrator",
}
ADMIN_AGENT = "Admin Agent"
OPTIONAL_SCOPES = (GRAPH_SCOPE, ARM_SCOPE)
LEASE_WAIT = 60.0  # seconds a finished sign-in waits for a rotation in progress to let go


@dataclass(frozen=True)
class ConsentStart:
    auth_url: str
    flow: dict = field(repr=False)


@dataclass(frozen=True)
class ConsentResult:
    credential_id: str
    version: str
    secret_id: str
    consented_by: str
    roles: tuple[str, ...]
    mfa: bool


def consent_scopes(scopes: Sequence[str] | None) -> list[str]:
    """Partner Center first (the token is redeemed for it), then any optional Graph/ARM scope."""
    chosen = [PARTNER_CENTER_SCOPE]
    for scope in scopes or ():
        scope = str(scope).strip()
        if not scope or scope in chosen:
            continue
        if not scope.startswith("https://") or " " in scope:
            raise InvalidInput(errors={"scopes": f"{scope!r} is not a resource scope URL."})
        chosen.append(scope)
    return chosen


def role_names(claims: Mapping) -> tuple[str, ...]:
    """Directory roles named from `wids`, plus Admin Agent when the claims allow it."""
    wids = [str(w).lower() for w in claims.get("wids") or []]
    names = [ROLE_NAMES[w] for w in wids if w in ROLE_NAMES]
    if is_admin_agent(claims):
        names.append(ADMIN_AGENT)
    return tuple(dict.fromkeys(names))


def is_admin_agent(claims: Mapping) -> bool:
    """Whether a Partner Center token's claims are consistent with Admin Agent membership.

    The AdminAgents group has a different object id in every partner tenant, so the claims
    cannot prove membership; Entra (or Partner Center) refuses non-members for the Partner
    Center resource (AADSTS50105). What the claims can show is its absence: a `groups` claim
    that is present but empty means the user is in no group at all. Without a `groups` claim
    (not emitted, or an overage pointer) we rely on that refusal.
    """
    if "groups" not in claims:
        return True
    groups = claims.get("groups")
    return isinstance(groups, list) and len(groups) > 0


class Consent:
    def __init__(self, settings, vault, leases, identity, invites) -> None:
        self.settings = settings
        self.vault = vault
        self.leases = leases
        self.identity = identity
        self.invites = invites
        self.lease_wait = LEASE_WAIT

    def begin(self, credential_id: str, redirect_uri: str, *, prompt_consent: bool = False,
              scopes: Sequence[str] | None = None, invite_token: str | None = None
              ) -> ConsentStart:
        """The sign-in URL, and the flow the caller keeps (signed, server-side) until the
        redirect comes back. An invite token, when given, must be open for this credential."""
        invite_id = None
        if invite_token is not None:
            claim = self.invites.verify(invite_token)
            if claim.credential_id != credential_id:
                raise ConsentFailed("invite-invalid",
                                    "This consent link is for another credential.")
            self.invites.check_open(credential_id, claim.invite_id)
            invite_id = claim.invite_id
        credential = self.vault.get_credential(credential_id)
        chosen = consent_scopes(scopes)
        # select_account: a session left in the browser (the operator's own, another
        # partner's) must not consent silently as whoever it belongs to
        flow = self.identity.begin(
            credential, redirect_uri, scopes=chosen,
            prompt="consent" if prompt_consent else "select_account",
        )
        flow.update({
            "broker_credential": credential.id,
            "broker_app": _app_key(credential),
            "broker_invite": invite_id,
            "broker_scopes": chosen,
        })
        return ConsentStart(auth_url=flow["auth_uri"], flow=flow)

    def finish(self, flow: Mapping, params: Mapping[str, str]) -> ConsentResult:
        """Exchange the code, check tenant, MFA and Admin Agent, then store and read back."""
        credential_id = flow.get("broker_credential") if isinstance(flow, Mapping) else None
        with bound(credential=str(credential_id) if credential_id else None):
            return self._finish(flow, params)

    def _finish(self, flow: Mapping, params: Mapping[str, str]) -> ConsentResult:
        if not isinstance(flow, Mapping) or not flow.get("broker_credential") \
                or not flow.get("state"):
            raise ConsentFailed("state-mismatch", "There is no consent in progress to finish.")
        if params.get("state") != flow["state"]:
            raise ConsentFailed("state-mismatch",
                                "The sign-in response does not belong to this consent.")
        credential_id = str(flow["broker_credential"])
        invite_id = flow.get("broker_invite")
        credential = self._unchanged(credential_id, flow)
        if invite_id:
            self.invites.check_open(credential_id, invite_id)

        redemption = self.identity.finish(credential, dict(flow), params)
        claims, id_claims = redemption.claims, redemption.id_token_claims
        expected = self.identity.tenant_guid(credential.tenant_id)
        tid = str(claims.get("tid") or id_claims.get("tid") or "").lower()
        if tid != expected:
            raise ConsentFailed(
                "wrong-tenant",
                f"The account signed in to tenant {tid or 'unknown'}, but credential "
                f"{credential_id!r} belongs to tenant {credential.tenant_id}. Nothing was stored.",
            )
        if "mfa" not in (claims.get("amr") or []):
            raise ConsentFailed(
                "no-mfa", "The sign-in did not use multi-factor authentication. Nothing was "
                          "stored.")
        if not is_admin_agent(claims):
            raise ConsentFailed(
                "not-admin-agent", "The account is not an Admin Agent of the partner tenant. "
                                   "Nothing was stored.")
        roles = role_names(claims)
        user = str(claims.get("upn") or claims.get("unique_name")
                   or id_claims.get("preferred_username") or claims.get("oid") or "unknown")

        try:
            with self.leases.hold(credential_id, wait=self.lease_wait) as held:
                credential = self._unchanged(credential_id, flow)
                if invite_id:
                    self.invites.check_open(credential_id, invite_id)
                if not held.usable():
                    raise Conflict("The credential's lease ran out before the consent could "
                                   "be stored.")
                # the new version carries no `invite` tag: that is what closes the invite
                written = self.vault.write_version(
                    credential, redemption.refresh_token, source=Source.CONSENT,
                    obtained_at=datetime.now(UTC), consented_by=user, mfa=True, roles=roles,
                )
                settle(self.vault, credential_id, written, held)
                version = written.version
        except Conflict:
            raise Conflict(
                "The credential stayed busy (a rotation is running); nothing was stored.",
                hint="start the consent again in a minute",
            ) from None
        log.info("consent by %s stored as version %s of %s", user, version.version,
                 credential_id)
        return ConsentResult(
            credential_id=credential_id, version=version.version,
            secret_id=version.secret_id, consented_by=user, roles=roles, mfa=True,
        )

    def _unchanged(self, credential_id: str, flow: Mapping):
        """The credential, refusing if it was removed or its app/tenant edited since begin."""
        try:
            credential = self.vault.get_credential(credential_id)
        except CredentialNotFound:
            raise ConsentFailed("state-mismatch",
                                f"Credential {credential_id!r} no longer exists.") from None
        if flow.get("broker_app") != _app_key(credential):
            raise ConsentFailed(
                "state-mismatch",
                f"Credential {credential_id!r} was edited during the sign-in; start again.")
        return credential


def _app_key(credential) -> str:
    return f"{credential.tenant_id}|{credential.client_id or 'cpv'}"
