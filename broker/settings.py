"""One typed settings object, built by one loader from the environment (and `.env`).

Everything else receives a `Settings`; nothing reads `os.environ` on its own, so tests swap the
object instead of patching the environment. A missing or malformed value stops start-up with a
`SettingsError` that names the variable, rather than failing later somewhere deep.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from broker.errors import SettingsError
from broker.logs import redact

OPERATOR_AUTH_MODES = ("local", "entra", "easyauth")
# set by App Service and Azure Functions in Azure only (not by `func start` or devstack)
AZURE_HOST_MARKERS = ("WEBSITE_INSTANCE_ID", "CONTAINER_APP_REPLICA_NAME")
SECRET_KEY_FILE = "secret-key"  # noqa: S105 - a file name


@dataclass(frozen=True)
class Settings:
    """The broker's configuration; `repr` hides every value that is or holds a secret."""

    vault_url: str
    authority_host: str = "https://login.microsoftonline.com"
    cpv_client_id: str = ""
    cpv_client_secret: str = field(default="", repr=False)
    public_url: str = "http://localhost:47400"
    partner_center_url: str = "https://api.partnercenter.microsoft.com"
    rotate_after_days: int = 10
    token_lifetime_days: int = 90
    rotate_schedule: str = "0 0 1 * * *"
    validate_schedule: str = "0 30 5 * * *"
    rotate_window_hours: float = 4.0
    rotate_concurrency: int = 8
    vault_creates_per_10s: int = 270
    warn_days: int = 30
    storage: str | None = field(default=None, repr=False)
    storage_account: str | None = None
    storage_blob_url: str | None = None
    storage_queue_url: str | None = None
    notify_webhook_url: str | None = field(default=None, repr=False)
    smtp_url: str | None = field(default=None, repr=False)
    notify_email: str | None = None
    secret_key: str = field(default="", repr=False)
    state_dir: Path = Path(".broker")  # load_settings: BROKER_STATE_DIR or default_state_dir()
    invite_ttl_hours: float = 24.0
    lease_seconds: int = 60
    operator_auth: str = "local"
    operator_tenant_id: str | None = None
    operator_client_id: str | None = None
    operator_client_secret: str | None = field(default=None, repr=False)
    operator_group_id: str | None = None
    operator_role: str | None = None
    display_name: str = "Partner Token Broker"  # who partner admins are told asks for consent

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
    values: dict[str, str] = {}
    if dotenv:
        values.update(_read_dotenv(Path.cwd() / ".env"))
    values.update(os.environ if environ is None else environ)
    settings = _Loader(values).settings()
    for value in (settings.cpv_client_secret, settings.operator_client_secret,
                  settings.secret_key, _account_key(settings.storage)):
        redact.register(value)
    return settings


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

    def display_name(self) -> str:
        """BROKER_DISPLAY_NAME: the vendor's or operator's name partner admins see."""
        name = "BROKER_DISPLAY_NAME"
        value = self.text(name, "Partner Token Broker")
        if len(value) > 80 or not value.isprintable():
            raise SettingsError(name, f"{name} must be a name of at most 80 printable "
                                      "characters, such as Fabrikam Cloud")
        return value

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise SettingsError(name, f"{name} is not set")
        return value

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
        raw = self.text(name)
        try:
            value = default if raw is None else int(raw)
        except ValueError:
            raise SettingsError(name, f"{name} must be a whole number") from None
        if not low <= value <= high:
            raise SettingsError(name, f"{name} must be between {low} and {high}")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        try:
            value = default if raw is None else float(raw)
        except ValueError:
            raise SettingsError(name, f"{name} must be a number") from None
        if not low <= value <= high:
            raise SettingsError(name, f"{name} must be between {low:g} and {high:g}")
        return value

    def ncrontab(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if value.startswith("%") or len(value.split()) == 6:
            return value
        raise SettingsError(
            name, f"{name} must be an NCRONTAB expression of 6 fields (sec min hour day month dow)"
        )

    def secret_key(self, state_dir: Path) -> str:
        value = self.text("BROKER_SECRET_KEY")
        if value is not None:
            if len(value) < 32:
                raise SettingsError("BROKER_SECRET_KEY",
                                    "BROKER_SECRET_KEY must be at least 32 characters")
            return value
        if running_in_azure(self.values):
            raise SettingsError("BROKER_SECRET_KEY", "BROKER_SECRET_KEY is not set")
        return _local_secret_key(state_dir)

    def settings(self) -> Settings:
        given = self.text("BROKER_STATE_DIR")
        state_dir = Path(given).absolute() if given else default_state_dir()
        operator_auth = self.text("BROKER_OPERATOR_AUTH", "local").lower()
        if operator_auth not in OPERATOR_AUTH_MODES:
            raise SettingsError(
                "BROKER_OPERATOR_AUTH", "BROKER_OPERATOR_AUTH must be local, entra or easyauth"
            )
        if operator_auth == "entra":
            for name in ("BROKER_OPERATOR_TENANT_ID", "BROKER_OPERATOR_CLIENT_ID",
                         "BROKER_OPERATOR_CLIENT_SECRET"):
                self.required(name)
        cpv_client_id = self.text("BROKER_CPV_CLIENT_ID", "")
        cpv_client_secret = self.text("BROKER_CPV_CLIENT_SECRET", "")
        if cpv_client_id and not cpv_client_secret:
            raise SettingsError("BROKER_CPV_CLIENT_SECRET", "BROKER_CPV_CLIENT_SECRET is not set "
                                "(required when BROKER_CPV_CLIENT_ID is)")
        lifetime = self.integer("BROKER_TOKEN_LIFETIME_DAYS", 90, 1, 3650)
        rotate_after = self.integer("BROKER_ROTATE_AFTER_DAYS", 10, 1, 3650)
        if rotate_after >= lifetime:
            raise SettingsError("BROKER_ROTATE_AFTER_DAYS", "BROKER_ROTATE_AFTER_DAYS must be "
                                "less than BROKER_TOKEN_LIFETIME_DAYS")
        notify_email = self.text("BROKER_NOTIFY_EMAIL")
        if notify_email is not None:
            bad = [a for a in (p.strip() for p in notify_email.split(",")) if not _EMAIL.match(a)]
            if bad:
                raise SettingsError("BROKER_NOTIFY_EMAIL", "BROKER_NOTIFY_EMAIL must be "
                                    "comma-separated email addresses")
        return Settings(
            vault_url=self.url("BROKER_VAULT_URL") or self.required("BROKER_VAULT_URL"),
            authority_host=self.url("BROKER_AUTHORITY_HOST", "https://login.microsoftonline.com"),
            cpv_client_id=cpv_client_id,
            cpv_client_secret=cpv_client_secret,
            public_url=self.url("BROKER_PUBLIC_URL", "http://localhost:47400",
                                schemes=("http", "https")),
            partner_center_url=self.url("BROKER_PARTNER_CENTER_URL",
                                        "https://api.partnercenter.microsoft.com"),
            rotate_after_days=rotate_after,
            token_lifetime_days=lifetime,
            rotate_schedule=self.ncrontab("BROKER_ROTATE_SCHEDULE", "0 0 1 * * *"),
            validate_schedule=self.ncrontab("BROKER_VALIDATE_SCHEDULE", "0 30 5 * * *"),
            rotate_window_hours=self.number("BROKER_ROTATE_WINDOW_HOURS", 4.0, 0.0, 24.0),
            rotate_concurrency=self.integer("BROKER_ROTATE_CONCURRENCY", 8, 1, 256),
            vault_creates_per_10s=self.integer("BROKER_VAULT_CREATES_PER_10S", 270, 1, 300),
            warn_days=self.integer("BROKER_WARN_DAYS", 30, 0, 365),
            storage=_expand_development_storage(self.text("AzureWebJobsStorage")),
            storage_account=self.text("AzureWebJobsStorage__accountName"),
            storage_blob_url=self.url("AzureWebJobsStorage__blobServiceUri",
                                      schemes=("http", "https")),
            storage_queue_url=self.url("AzureWebJobsStorage__queueServiceUri",
                                       schemes=("http", "https")),
            notify_webhook_url=self.url("BROKER_NOTIFY_WEBHOOK_URL", schemes=("http", "https")),
            smtp_url=self.url("BROKER_SMTP_URL", schemes=("smtp", "smtps")),
            notify_email=notify_email,
            secret_key=self.secret_key(state_dir),
            state_dir=state_dir,
            invite_ttl_hours=self.number("BROKER_INVITE_TTL_HOURS", 24.0, 0.1, 24.0 * 30),
            lease_seconds=self.integer("BROKER_LEASE_SECONDS", 60, 15, 60),
            operator_auth=operator_auth,
            operator_tenant_id=self.text("BROKER_OPERATOR_TENANT_ID"),
            operator_client_id=self.text("BROKER_OPERATOR_CLIENT_ID"),
            operator_client_secret=self.text("BROKER_OPERATOR_CLIENT_SECRET"),
            operator_group_id=self.text("BROKER_OPERATOR_GROUP_ID"),
            display_name=self.display_name(),
            operator_role=self.text("BROKER_OPERATOR_ROLE"),
        )


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
