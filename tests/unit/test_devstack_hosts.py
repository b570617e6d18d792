"""`python -m devstack hosts`: the hosts lines a named vault needs, printed, and added as root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack import hosts

ROOT = Path(__file__).resolve().parents[2]


def test_prints_only_the_missing_lines_and_adds_them_when_it_may(tmp_path, capsys):
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("127.0.0.1 localhost\n127.0.0.1 devvault.vault.localhost  # devstack")
    assert hosts.main(["devvault", "Billing-KV"], hosts_file, can_write=True) == 0
    assert capsys.readouterr().out == "127.0.0.1 billing-kv.vault.localhost\n"
    assert hosts_file.read_text().splitlines()[-1] == "127.0.0.1 billing-kv.vault.localhost"
    assert hosts.main(["devvault", "billing-kv"], hosts_file, can_write=True) == 0
    assert capsys.readouterr().out == ""  # nothing missing, nothing added twice
    assert hosts_file.read_text().count("billing-kv") == 1


def test_without_root_it_prints_and_says_how_to_add(tmp_path, capsys):
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("127.0.0.1 localhost\n")
    assert hosts.main([], hosts_file, can_write=False) == 1
    out, err = capsys.readouterr()
    assert out == "127.0.0.1 devvault.vault.localhost\n"
    assert "run this as root" in err and "sudo tee -a" in err
    assert hosts_file.read_text() == "127.0.0.1 localhost\n"


@pytest.mark.parametrize("name", ["x", "9lives", "a" * 25, "bad--name", "dot.ted", "-x-"])
def test_a_name_key_vault_would_refuse_is_refused(tmp_path, name, capsys):
    assert hosts.main([name], tmp_path / "hosts", can_write=True) == 2
    assert "is not a Key Vault name" in capsys.readouterr().err
    assert not (tmp_path / "hosts").exists()


def test_python_dash_m_devstack_hosts(tmp_path):
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("127.0.0.1 localhost\n")
    result = subprocess.run([sys.executable, "-m", "devstack", "hosts", "--hosts-file",
                             str(hosts_file), "kv-one"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.stdout == "127.0.0.1 kv-one.vault.localhost\n"
