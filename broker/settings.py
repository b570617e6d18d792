"""One typed settings object, built by one loader from the environment (and `.env`).

Everything else receives a `Settings`; nothing reads `os.environ` on its own, so tests swap the
object instead of patching the environment. A missing or malformed value stops start-up with a
`SettingsError` that names the variable, rather than failing later somewhere deep.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from broker.errors import SettingsError
from broker.logs import redact

# set by App Service and Azure Functions in Azure only (not by `func start` or devstack)
AZURE_HOST_MARKERS = ("WEBSITE_INSTANCE_ID", "CONTAINER_APP_REPLICA_NAME")
SECRET_KEY_FILE = "secret-key"  # noqa: S105 - a file name


def _setting(env: str, default: Any = None, *, read: str = "text", secret: bool = False,
             **check: Any) -> Any:
    """One setting, declared once: its variable, its default, how it is read and checked."""
    return field(default=default, repr=not secret,
                 metadata={"env": env, "read": read, "check": check})


@dataclass(frozen=True)
class Settings:
    """The broker's configuration; `repr` hides every value that is or holds a secret.

    Each field is the one declaration of its setting: the variable it is read from, its default
    and its check. `load_settings` reads every field by that declaration; `read_settings` reads
    a few (what `TokenResolver` needs), by the same declarations.
    """

    vault_url: str = field(metadata={"env": "BROKER_VAULT_URL", "read": "required_url",
                                     "check": {}})
    # the broker's own secrets (signing key, CPV and operator client secrets), where no consumer
    # has a role; a secret setting left unset is read from it (broker/config_vault.py)
    config_vault_url: str | None = _setting("BROKER_CONFIG_VAULT_URL", read="url")
    authority_host: str = _setting("BROKER_AUTHORITY_HOST", "https://login.microsoftonline.com",
                                   read="url")
    cpv_client_id: str = _setting("BROKER_CPV_CLIENT_ID", "")
    cpv_client_secret: str = _setting("BROKER_CPV_CLIENT_SECRET", "", read="vault_secret",
                                      secret=True, in_vault="cpv-client-secret",
                                      needed_if=("cpv_client_id", None))
    public_url: str = _setting("BROKER_PUBLIC_URL", "http://localhost:47400", read="url",
                               schemes=("http", "https"))
    partner_center_url: str = _setting("BROKER_PARTNER_CENTER_URL",
                                       "https://api.partnercenter.microsoft.com", read="url")
    rotate_after_days: int = _setting("BROKER_ROTATE_AFTER_DAYS", 10, read="integer",
                                      low=1, high=3650)
    token_lifetime_days: int = _setting("BROKER_TOKEN_LIFETIME_DAYS", 90, read="integer",
                                        low=1, high=3650)
    rotate_schedule: str = _setting("BROKER_ROTATE_SCHEDULE", "0 0 1 * * *", read="ncrontab")
    validate_schedule: str = _setting("BROKER_VALIDATE_SCHEDULE", "0 30 5 * * *",
                                      read="ncrontab")
    rotate_window_hours: float = _setting("BROKER_ROTATE_WINDOW_HOURS", 4.0, read="number",
                                          low=0.0, high=24.0)
    rotate_concurrency: int = _setting("BROKER_ROTATE_CONCURRENCY", 8, read="integer",
                                       low=1, high=256)
    vault_creates_per_10s: int = _setting("BROKER_VAULT_CREATES_PER_10S", 270, read="integer",
                                          low=1, high=300)
    warn_days: int = _setting("BROKER_WARN_DAYS", 30, read="integer", low=0, high=365)
    storage: str | None = _setting("AzureWebJobsStorage", read="storage", secret=True)
    storage_account: str | None = _setting("AzureWebJobsStorage__accountName")
    storage_blob_url: str | None = _setting("AzureWebJobsStorage__blobServiceUri", read="url",
                                            schemes=("http", "https"))
    storage_queue_url: str | None = _setting("AzureWebJobsStorage__queueServiceUri", read="url",
                                             schemes=("http", "https"))
    notify_webhook_url: str | None = _setting("BROKER_NOTIFY_WEBHOOK_URL", read="url",
                                              secret=True, schemes=("http", "https"))
    smtp_url: str | None = _setting("BROKER_SMTP_URL", read="url", secret=True,
                                    schemes=("smtp", "smtps"))
    notify_email: str | None = _setting("BROKER_NOTIFY_EMAIL", read="emails")
    # local state (file locks, the generated signing key): the same place from any directory
    state_dir: Path = field(default_factory=lambda: default_state_dir(), metadata={
        "env": "BROKER_STATE_DIR", "read": "path", "check": {}})
    # signs invite links (the core) and the site's sessions; read after state_dir, which holds
    # the local default
    secret_key: str = _setting("BROKER_SECRET_KEY", "", read="secret_key", secret=True)
    invite_ttl_hours: float = _setting("BROKER_INVITE_TTL_HOURS", 24.0, read="number",
                                       low=0.1, high=24.0 * 30)
    lease_seconds: int = _setting("BROKER_LEASE_SECONDS", 60, read="integer", low=15, high=60)
    # operator sign-in: read here, checked by consent_web (the only reader) when the site starts,
    # so the Functions app and the CLI never refuse to start over them
    operator_auth: str = _setting("BROKER_OPERATOR_AUTH", "local", read="lower")
    operator_tenant_id: str | None = _setting("BROKER_OPERATOR_TENANT_ID")
    operator_client_id: str | None = _setting("BROKER_OPERATOR_CLIENT_ID")
    operator_client_secret: str | None = _setting(
        "BROKER_OPERATOR_CLIENT_SECRET", read="vault_secret", secret=True,
        in_vault="operator-client-secret", needed_if=("operator_auth", "entra"))
    operator_group_id: str | None = _setting("BROKER_OPERATOR_GROUP_ID")
    operator_role: str | None = _setting("BROKER_OPERATOR_ROLE")
    # who partner admins are told asks for consent
    display_name: str = _setting("BROKER_DISPLAY_NAME", "Partner Token Broker",
                                 read="display_name")

    @property
    def uses_blob_leases(self) -> bool:
        """Blob leases when any form of `AzureWebJobsStorage` is configured, else file locks."""
        return bool(self.storage or self.storage_account or self.storage_blob_url)

    @property
    def authority_is_microsoft(self) -> bool:
        """Whether the authority is Entra ID itself; MSAL's instance discovery works only there
        (devstack's authority is not one it knows)."""
        from broker.identity import is_microsoft_host

        return is_microsoft_host(self.authority_host)


def default_state_dir() -> Path:
    """Where local state (file locks, the generated signing key) lives without BROKER_STATE_DIR:
    the same place from any working directory, so the CLI, the site and the worker of one
    installation share one signing key (an invite link made by `broker invite` in another
    folder must open on the site). In a checkout (`make install` is an editable install):
    `<checkout>/.broker`; in an installed package: `$XDG_STATE_HOME/partner-token-broker`
    (`~/.local/state/partner-token-broker`)."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "broker").is_dir():
        return checkout / ".broker"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "partner-token-broker"


def load_settings(environ: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Build `Settings` from `environ` (default `os.environ`) over `./.env` (never overriding)."""
    loader = _Loader(_environment(environ, dotenv))
    settings = Settings(**{f.name: loader.read(f) for f in fields(Settings)})
    _check_together(settings)
    for value in (settings.cpv_client_secret, settings.operator_client_secret,
                  settings.secret_key, _account_key(settings.storage)):
        redact.register(value)
    return settings


def read_settings(names: Iterable[str], environ: Mapping[str, str] | None = None, *,
                  dotenv: bool = True) -> dict[str, Any]:
    """Only the named settings, read and checked by their declarations on `Settings` (for a
    consumer, which has no BROKER_VAULT_URL and needs three values)."""
    loader = _Loader(_environment(environ, dotenv))
    by_name = {f.name: f for f in fields(Settings)}
    values = {name: loader.read(by_name[name]) for name in names}
    for name, value in values.items():
        if not by_name[name].repr and isinstance(value, str):
            redact.register(value)
    return values


def _environment(environ: Mapping[str, str] | None, dotenv: bool) -> dict[str, str]:
    values: dict[str, str] = {}
    if dotenv:
        values.update(_read_dotenv(Path.cwd() / ".env"))
    values.update(os.environ if environ is None else environ)
    return values


def _check_together(settings: Settings) -> None:
    """The rules that span two settings."""
    if settings.cpv_client_id and not settings.cpv_client_secret:
        raise SettingsError("BROKER_CPV_CLIENT_SECRET", "BROKER_CPV_CLIENT_SECRET is not set "
                            "(required when BROKER_CPV_CLIENT_ID is)")
    if settings.rotate_after_days >= settings.token_lifetime_days:
        raise SettingsError("BROKER_ROTATE_AFTER_DAYS", "BROKER_ROTATE_AFTER_DAYS must be "
                            "less than BROKER_TOKEN_LIFETIME_DAYS")


def _account_key(connection_string: str | None) -> str | None:
    for part in (connection_string or "").split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "accountkey":
            return value.strip()
    return None


def running_in_azure(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in AZURE_HOST_MARKERS)


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


UNRESOLVED_REFERENCE = "@Microsoft.KeyVault("


class _Loader:
    """Reads, checks and converts one setting at a time so each error names its variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.read_so_far: dict[str, Any] = {}

    def read(self, declared: Field) -> Any:
        """The value of one declared setting: `read` names the method, `check` its limits."""
        meta = declared.metadata
        default = declared.default
        if default is MISSING:  # required (no default), or computed (default_factory)
            factory = declared.default_factory
            default = None if factory is MISSING else factory()
        value = getattr(self, meta["read"])(meta["env"], default, **meta["check"])
        self.read_so_far[declared.name] = value
        return value

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name, "")
        value = value.strip() if isinstance(value, str) else ""
        if value.startswith(UNRESOLVED_REFERENCE):
            # App Service leaves the reference text in place when it cannot read the secret;
            # taken literally it would become a public signing key or a bogus client secret
            raise SettingsError(name, f"{name} is a Key Vault reference App Service could not "
                                      "resolve", hint=(
                "Check that the secret exists and that the app's managed identity may read "
                "it (Key Vault Secrets User or Officer), then restart the app."))
        return value or default

    def lower(self, name: str, default: str) -> str:
        return self.text(name, default).lower()

    def path(self, name: str, default: Path) -> Path:
        given = self.text(name)
        return Path(given).absolute() if given else default

    def display_name(self, name: str, default: str) -> str:
        """BROKER_DISPLAY_NAME: the vendor's or operator's name partner admins see."""
        value = self.text(name, default)
        if len(value) > 80 or not value.isprintable():
            raise SettingsError(name, f"{name} must be a name of at most 80 printable "
                                      "characters, such as Fabrikam Cloud")
        return value

    def required(self, name: str, default: Any = None) -> str:
        value = self.text(name)
        if value is None:
            raise SettingsError(name, f"{name} is not set")
        return value

    def required_url(self, name: str, default: Any = None) -> str:
        return self.url(name) or self.required(name)

    def url(self, name: str, default: str | None = None, *, schemes=("https",)) -> str | None:
        value = self.text(name, default)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            allowed = " or ".join(f"{s}://" for s in schemes)
            raise SettingsError(name, f"{name} must be a URL starting with {allowed}")
        return value.rstrip("/")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        return self._bounded(name, default, low, high, int, "a whole number", "")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        return self._bounded(name, default, low, high, float, "a number", "g")

    def _bounded(self, name: str, default: Any, low: Any, high: Any, convert: Callable,
                 noun: str, spec: str) -> Any:
        raw = self.text(name)
        try:
            value = default if raw is None else convert(raw)
        except ValueError:
            raise SettingsError(name, f"{name} must be {noun}") from None
        if not low <= value <= high:
            raise SettingsError(name, f"{name} must be between {low:{spec}} and {high:{spec}}")
        return value

    def ncrontab(self, name: str, default: str) -> str:
        """A schedule the Functions host accepts (`%NAME%` app setting references pass)."""
        value = self.text(name, default)
        if value.startswith("%"):
            return value
        from broker.ncrontab import InvalidSchedule, normalize

        try:
            normalize(value)
        except InvalidSchedule as exc:
            raise SettingsError(name, f"{name}: {exc}") from None
        return value

    def storage(self, name: str, default: str | None = None) -> str | None:
        return _expand_development_storage(self.text(name, default))

    def emails(self, name: str, default: str | None = None) -> str | None:
        value = self.text(name, default)
        if value is not None:
            bad = [a for a in (p.strip() for p in value.split(",")) if not _EMAIL.match(a)]
            if bad:
                raise SettingsError(name, f"{name} must be comma-separated email addresses")
        return value

    def vault_secret(self, name: str, default: Any = None, *, in_vault: str,
                     needed_if: tuple[str, Any] | None = None) -> Any:
        """A secret setting; when it is unset (and needed: `needed_if` is a setting read before
        and the value it must have, None for any), the config vault's secret `in_vault`."""
        value = self.text(name)
        if value is not None:
            return value
        config_vault = self.read_so_far.get("config_vault_url")
        if config_vault and needed_if is not None:
            setting, wanted = needed_if
            got = self.read_so_far.get(setting)
            if not got or (wanted is not None and got != wanted):
                return default
        if config_vault:
            from broker.config_vault import read_secret

            return read_secret(config_vault, in_vault, name) or default
        return default

    def secret_key(self, name: str, default: str = "") -> str:
        from broker.config_vault import SIGNING_KEY

        value = self.vault_secret(name, None, in_vault=SIGNING_KEY)
        if value is not None:
            if len(value) < 32:
                raise SettingsError(name, f"{name} must be at least 32 characters")
            return value
        if self.read_so_far.get("config_vault_url"):
            raise SettingsError(name, f"{name} is not set and the config vault has no "
                                      f"{SIGNING_KEY} secret", hint=(
                f"Create the secret {SIGNING_KEY} (48 random characters or more) in the config "
                f"vault, or set {name}."))
        if running_in_azure(self.values):
            raise SettingsError(name, f"{name} is not set")
        return _local_secret_key(self.read_so_far.get("state_dir") or default_state_dir())


# what `UseDevelopmentStorage=true` (the Functions tools' default) means: Azurite's
# published development account on its default ports; the storage SDKs do not expand it
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
)


def _expand_development_storage(value: str | None) -> str | None:
    if value and value.replace(" ", "").rstrip(";").lower() == "usedevelopmentstorage=true":
        return DEVELOPMENT_STORAGE
    return value


_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


def _local_secret_key(state_dir: Path) -> str:
    """Create the local-dev key once; every process on this machine then signs with the same key.

    Written to a temporary file and hard-linked into place, so a concurrent reader never sees a
    half-written key and two racing creators agree on the winner's.
    """
    path = state_dir / SECRET_KEY_FILE
    try:
        if not path.exists():
            state_dir.mkdir(parents=True, exist_ok=True)
            tmp = state_dir / f".{SECRET_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip()
    except OSError as exc:
        raise SettingsError(
            "BROKER_SECRET_KEY",
            f"BROKER_SECRET_KEY is not set and {path} cannot be created ({exc.strerror})",
        ) from None
