"""A local Azure Key Vault, secrets data plane only, that the unmodified SDK talks to.

What is emulated, over HTTPS with the devstack CA, on `https://localhost:<port>` and on any
`https://<name>.vault.localhost:<port>` that resolves to loopback:

- the secrets REST API from api-version 7.0 to azure-keyvault-secrets 4.12's default
  (`2026-04-01`): set, get (latest, `/secrets/<name>/` or a version), update properties (a
  version, or the latest with an empty version), list secrets and versions (25 a page at most,
  absolute `nextLink` with `$skiptoken`), delete, get and list deleted, recover, purge, backup
  and restore;
- soft delete with a 90-day retention on the emulated clock (`Recoverable+Purgeable`): a deleted
  name answers 409 `ObjectIsDeletedButRecoverable` until recovered or purged, and is purged by
  itself once its `scheduledPurgeDate` passes;
- `nbf`/`exp` are stored and returned but, as in Azure, not enforced on get; a disabled version
  answers 403 `SecretDisabled`;
- Key Vault's validation (names `^[0-9a-zA-Z-]{1,127}$`, values up to 25 KB, 15 tags of at most
  512/256 characters), error bodies and codes (`SecretNotFound`, `Forbidden`/`SecretDisabled`,
  `Conflict`, `BadParameter`, `Unauthorized`, `Throttled`);
- the bearer challenge the SDK's `ChallengeAuthPolicy` expects, accepting only tokens devstack's
  authority or managed identity endpoint signed for the vault (see `auth.py`);
- Azure RBAC (`enableRbacAuthorization`): the built-in Key Vault roles by their real ids and data
  actions, assigned at subscription, resource group, vault or secret scope (`devstack.rbac`,
  `POST /rbac`), refusals as 403 `Forbidden`/`ForbiddenByRbac` naming caller, action and
  resource; one app per vault (`create_app(ctx, name)`), so the token and config vaults are two;
- with `--vault-throttle`, the per-vault service limits (300 creates and 4,000 other
  transactions per 10 s, 429 with `Retry-After`); injected 429/503 faults, lost answers and
  latency from `devstack.faults`; counters at `GET /_devstack/stats` (`requests`, `throttled`,
  `creates`);
- per vault (`settings.py`): purge protection (`recoveryLevel` `Recoverable`, purge 403) and
  realistic timing (a delete takes seconds, pages come back short or empty with a `nextLink`);
- Key Vault's standard response headers, and its answers to what clients get wrong (`PUT
  /secrets/` 404 `NotFound`, `outContentType` on a plain secret 400, a foreign or damaged
  backup blob `Malformed backup blob`, a deleted disabled secret 403 `SecretDisabled`);
- persistence in `<state-dir>/vault.db` (SQLite, see `store.py`); `POST /reset` wipes it.

What is not: the keys and certificates planes (and so certificate-backed secrets, `kid`,
`managed`, `outContentType` conversion), vault management (ARM), access policies, group
membership in role assignments, custom roles and deny assignments, private endpoints and
firewalls, custom retention, and the subscription-wide limits. Backups restore only into
devstack vaults.
"""

from .api import create_app

__all__ = ["create_app"]
