"""The unmodified aio `SecretClient` (aiohttp), through aio `DefaultAzureCredential`.

aiohttp builds its default TLS context when it is first imported, reading `SSL_CERT_FILE` then;
in this test process it may be imported before the devstack fixture loads the env file, so the
in-process clients name the devstack CA with the SDK's `connection_verify` option.
`test_env_file_alone_is_enough` proves, in a fresh process, that the env file alone is enough.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Awaitable, Callable

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity.aio import DefaultAzureCredential
from azure.keyvault.secrets.aio import SecretClient


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run(devstack, scenario: Callable[[SecretClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with DefaultAzureCredential() as credential, SecretClient(
            devstack.vault_url, credential, verify_challenge_resource=False,
            connection_verify=devstack.ca_bundle,
        ) as client:
            await scenario(client)

    asyncio.run(main())


def test_set_get_update(devstack):
    name = unique("aio-rt")

    async def scenario(client: SecretClient) -> None:
        first = await client.set_secret(name, "one", tags={"source": "consent"},
                                        expires_on=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        second = await client.set_secret(name, "two")
        assert (await client.get_secret(name)).value == "two"
        older = await client.get_secret(name, first.properties.version)
        assert older.value == "one" and older.properties.tags == {"source": "consent"}
        assert older.properties.expires_on == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        updated = await client.update_secret_properties(name, enabled=False)
        assert updated.version == second.properties.version and not updated.enabled
        with pytest.raises(HttpResponseError) as info:
            await client.get_secret(name)
        assert info.value.status_code == 403
        with pytest.raises(ResourceNotFoundError):
            await client.get_secret(unique("aio-missing"))

    run(devstack, scenario)


def test_concurrent_writes_and_paging(devstack):
    prefix = unique("aio-page")
    names = [f"{prefix}-{i:02d}" for i in range(60)]
    rotated = unique("aio-rotated")

    async def scenario(client: SecretClient) -> None:
        await asyncio.gather(*(client.set_secret(name, name) for name in names))
        made = await asyncio.gather(*(client.set_secret(rotated, str(i)) for i in range(30)))
        listed = {p.name async for p in client.list_properties_of_secrets()}
        assert set(names) <= listed
        sizes = [len([p async for p in page])
                 async for page in client.list_properties_of_secrets().by_page()]
        assert max(sizes) == 25
        versions = [p.version async for p in client.list_properties_of_secret_versions(rotated)]
        assert sorted(versions) == sorted(s.properties.version for s in made)
        assert len(set(versions)) == 30

    run(devstack, scenario)


def test_soft_delete_and_backup(devstack):
    name = unique("aio-lifecycle")

    async def scenario(client: SecretClient) -> None:
        await client.set_secret(name, "kept")
        blob = await client.backup_secret(name)
        deleted = await client.delete_secret(name)
        assert deleted.recovery_id.endswith(f"/deletedsecrets/{name}")
        with pytest.raises(ResourceExistsError):
            await client.set_secret(name, "reuse")
        assert name in {d.name async for d in client.list_deleted_secrets()}
        await client.recover_deleted_secret(name)
        assert (await client.get_secret(name)).value == "kept"
        await client.delete_secret(name)
        await client.purge_deleted_secret(name)
        with pytest.raises(ResourceNotFoundError):
            await client.get_deleted_secret(name)
        restored = await client.restore_secret_backup(blob)
        assert restored.name == name
        assert (await client.get_secret(name)).value == "kept"

    run(devstack, scenario)


def test_env_file_alone_is_enough(devstack):
    """A fresh process with only the env file's variables: no `connection_verify`, no tricks."""
    name = unique("aio-env")
    script = textwrap.dedent(f"""
        import asyncio, os
        from azure.identity.aio import DefaultAzureCredential
        from azure.keyvault.secrets.aio import SecretClient

        async def main():
            async with DefaultAzureCredential() as credential, SecretClient(
                    os.environ["BROKER_VAULT_URL"], credential,
                    verify_challenge_resource=False) as client:
                await client.set_secret("{name}", "from-env")
                print((await client.get_secret("{name}")).value)

        asyncio.run(main())
    """)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AZURE_")}
    env.update(devstack.env)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-env"
