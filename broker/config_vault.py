"""The broker's own secrets, read from the config vault (`BROKER_CONFIG_VAULT_URL`).

The key that signs operator sessions and invite links, the CPV app's client secret and the
operator app's client secret are not tokens and must not sit next to them: a consumer that may
read the token vault could then forge an operator session. They live in a vault of their own,
where only the rotation app and the consent site hold Key Vault Secrets User.

In Azure the app settings are Key Vault references into that vault, so the platform resolves them
and the setting is simply set. Where no platform does that (devstack, a developer's machine,
another host), the settings loader reads the secret here when the setting itself is empty.
"""

from __future__ import annotations

from broker.errors import SettingsError

# the secrets' names in the config vault (names, not values)
SIGNING_KEY = "broker-secret-key"
CPV_CLIENT_SECRET = "cpv-client-secret"  # noqa: S105
OPERATOR_CLIENT_SECRET = "operator-client-secret"  # noqa: S105


def read_secret(vault_url: str, name: str, setting: str) -> str | None:
    """The latest value of `name` in the config vault, None when there is no such secret.

    Raises SettingsError naming `setting` (the variable that could have held the value) when
    the vault refuses this identity or cannot be reached: the app cannot start without it.
    Read each time settings are loaded (once per process start), never cached: a rotated key
    or another vault must not be answered from memory.
    """
    from azure.core import exceptions as az
    from azure.identity import DefaultAzureCredential

    from broker.vault import secret_client

    where = f"{name} in the config vault (BROKER_CONFIG_VAULT_URL)"
    try:
        with DefaultAzureCredential() as credential, \
                secret_client(vault_url, credential) as client:
            return client.get_secret(name).value
    except az.ResourceNotFoundError:
        return None
    except az.HttpResponseError as exc:
        if exc.status_code == 403:
            raise SettingsError(setting, f"This app's identity may not read {where}.", hint=(
                "Assign the app's managed identity 'Key Vault Secrets User' on the config vault, "
                f"or set {setting}.")) from None
        raise SettingsError(setting, f"Could not read {where} (HTTP {exc.status_code}).",
                            hint=f"Check BROKER_CONFIG_VAULT_URL, or set {setting}.") from None
    except az.AzureError as exc:
        raise SettingsError(setting, f"Could not read {where} ({type(exc).__name__}).",
                            hint=f"Check BROKER_CONFIG_VAULT_URL and the app's identity, or set "
                                 f"{setting}.") from None
