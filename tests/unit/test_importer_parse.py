"""Reading an import file: CSV and JSON shapes, limits, and malformed files refused by line."""

from __future__ import annotations

import json

import pytest

from broker import importer
from broker.errors import InvalidInput
from broker.importer import read_rows
from broker.logs import redact

HEADER = "id,environment,product,marketplace,tenant_id,client_id,client_secret," \
         "secret_expires_on,refresh_token"
TOKEN = "0.AXYZ-refresh-token-from-the-old-config-0123456789abcdefghijklmnop"


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def malformed(path) -> str:
    with pytest.raises(InvalidInput) as exc_info:
        read_rows(path)
    assert "nothing was written" in exc_info.value.hint
    return str(exc_info.value)


def test_csv_rows_keep_their_line_numbers(tmp_path):
    path = write(tmp_path, "t.csv", f"{HEADER}\n"
                 f"c1,test,CSP,US,contoso.example,,,,{TOKEN}1\n\n"
                 f"c2,production,CSP,EU,contoso.example,,,,{TOKEN}2\n")
    rows = read_rows(path)
    assert [(r.line, r.id, r.values["environment"]) for r in rows] == [
        (2, "c1", "test"), (4, "c2", "production")]
    assert rows[0].values["refresh_token"] == TOKEN + "1"


def test_csv_header_is_forgiving_about_case_spaces_dashes_and_a_bom(tmp_path):
    path = write(tmp_path, "t.csv", "\ufeffID, Tenant-ID ,Refresh Token\n"
                 f"c1,contoso.example,{TOKEN}\n".encode())
    assert read_rows(path)[0].values == {"id": "c1", "tenant_id": "contoso.example",
                                         "refresh_token": TOKEN}


def test_quoted_csv_cells_may_hold_commas(tmp_path):
    path = write(tmp_path, "t.csv", f'id,product,refresh_token\nc1,"CSP, legacy",{TOKEN}\n')
    assert read_rows(path)[0].values["product"] == "CSP, legacy"


def test_json_list_rows_carry_the_line_of_their_object(tmp_path):
    data = [{"id": "c1", "tenant_id": "contoso.example", "refresh_token": TOKEN},
            {"id": "c2", "tenant_id": "contoso.example", "refresh_token": TOKEN + "2",
             "client_id": None}]
    path = write(tmp_path, "t.json", json.dumps(data, indent=2))
    rows = read_rows(path)
    assert [(r.line, r.id) for r in rows] == [(2, "c1"), (7, "c2")]
    assert "client_id" not in rows[1].values  # null is the same as absent


def test_json_object_with_credentials_key(tmp_path):
    path = write(tmp_path, "export.txt", json.dumps(
        {"credentials": [{"id": "c1", "refresh_token": TOKEN}]}))
    assert [r.id for r in read_rows(path)] == ["c1"]


def test_tokens_read_are_registered_for_redaction(tmp_path):
    token = TOKEN + "-registered"
    read_rows(write(tmp_path, "t.json", json.dumps([{"id": "c1", "refresh_token": token}])))
    assert token in redact.registered()


@pytest.mark.parametrize("name, text, message", [
    ("t.csv", "", "line 1: the header row is missing"),
    ("t.csv", "id,refresh_token\n", "line 1: no credentials in the file"),
    ("t.csv", "id,tenant,refresh_token\nc1,x,t\n", "line 1: column 2 is not a known column name"),
    ("t.csv", "id,tenant_id\nc1,x\n", "line 1: the required column 'refresh_token' is missing"),
    ("t.csv", "id,id,refresh_token\nc1,c1,t\n", "line 1: a column appears twice"),
    ("t.csv", f"id,refresh_token\nc1,{TOKEN}\nc2\n", "line 3: 1 cells, but the header has 2"),
    ("t.csv", f"id,refresh_token\nc1,{TOKEN}\nC1,{TOKEN}x\n",
     "line 3: credential 'c1' appears again (first on line 2)"),
    ("t.csv", "id,refresh_token\nc1,\n", "line 2: refresh_token is empty"),
    ("t.csv", f"id,refresh_token\n,{TOKEN}\n", "line 2: id is empty"),
    ("t.csv", f'id,refresh_token\nc1,"{TOKEN}\n', "not valid CSV"),
    ("t.json", "[{\"id\": \"c1\",\n \"refresh_token\": }]", "line 2: not valid JSON"),
    ("t.json", '{"rows": []}', "line 1: key 1 is not a known key name"),
    ("t.json", '"hello"', "line 1: expected a list of credentials"),
    ("t.json", "[]", "line 1: no credentials in the file"),
    ("t.json", '[\n  {"id": "c1", "refresh_token": "t", "tenantid": "x"}]',
     "line 2: key 3 is not a known key name"),
    ("t.json", '[\n\n  {"id": "c1", "refresh_token": 12345}]',
     "line 3: refresh_token must be a string"),
    ("t.json", '["c1"]', "credential 1 is not an object"),
    ("t.json", "[" * 100000 + "]" * 100000, "nested too deeply"),
])
def test_malformed_files_are_refused_with_a_line_number(tmp_path, name, text, message):
    assert message in malformed(write(tmp_path, name, text))


SECRETISH = "0.AQABsecretLookingValue0123456789abcdefXYZ"  # no `-`: normalising keeps it


@pytest.mark.parametrize("name, text", [
    # no header row: the first line's cells are a token and a secret
    ("t.csv", f"{SECRETISH},contoso,test\nc1,{TOKEN},x\n"),
    # columns swapped: the id column holds tokens
    ("t.csv", f"id,refresh_token\n{SECRETISH},t\n{SECRETISH},t\n"),
    ("t.json", json.dumps([{"id": "c1", "refresh_token": "t", SECRETISH: "x"}])),
    ("t.json", json.dumps({SECRETISH: []})),
])
def test_a_cell_or_key_that_may_be_a_token_is_never_echoed(tmp_path, name, text):
    message = malformed(write(tmp_path, name, text))
    assert SECRETISH.lower() not in message.lower()


def test_a_file_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, "t.csv", b"id,refresh_token\nc1,t\nc2,\xff\xfe\n")
    assert "line 3: not UTF-8 text" in malformed(path)


def test_a_missing_file_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="cannot read"):
        read_rows(tmp_path / "absent.csv")


def test_too_big_a_file_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "MAX_BYTES", 100)
    path = write(tmp_path, "t.csv", f"id,refresh_token\nc1,{TOKEN}{'x' * 200}\n")
    assert "the limit is 100" in malformed(path)


def test_too_many_rows_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "MAX_ROWS", 2)
    csv_rows = "".join(f"c{i},{TOKEN}\n" for i in range(3))
    assert "line 4: more than 2 rows" in malformed(write(tmp_path, "t.csv",
                                                          f"id,refresh_token\n{csv_rows}"))
    json_rows = json.dumps([{"id": f"c{i}", "refresh_token": TOKEN} for i in range(3)])
    assert "more than 2 credentials" in malformed(write(tmp_path, "t.json", json_rows))


def test_malformed_messages_never_contain_a_token(tmp_path):
    path = write(tmp_path, "t.csv", f"id,refresh_token\nc1,{TOKEN}\nc1,{TOKEN}\n")
    assert TOKEN not in malformed(path)
