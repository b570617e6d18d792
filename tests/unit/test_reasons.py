"""Reasons for a non-active status and the last validation, as tags: one format, read back the
same everywhere, and in words an operator can act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.credentials import (
    Check,
    Credential,
    Reason,
    Status,
    TokenVersion,
    reason_for,
)
from broker.errors import AppMisconfigured, NeedsConsent
from broker.identity import classify
from broker.reasons import AADSTS, BROKER, explain

NOW = datetime(2026, 12, 6, 17, 40, 3, tzinfo=UTC)


def credential(*, status="active", tags=None, expires_in_days=80.0, secret_in_days=None,
               placeholder=False) -> Credential:
    version = TokenVersion(
        version="v1", secret_id="https://kv/secrets/rt-c/v1", created_on=NOW,
        not_before=NOW, expires_on=NOW + timedelta(days=expires_in_days), enabled=not placeholder,
        tags={"status": "pending-consent" if placeholder else status,
              "client_id": "cpv" if secret_in_days is None else "5e6f7a8b-9c0d-4e1f-a2b3-"
                                                                 "c4d5e6f7a8b9",
              **(tags or {})})
    secret = None if secret_in_days is None else NOW + timedelta(days=secret_in_days)
    return Credential.from_latest("c", version, "https://kv/secrets/rt-c", secret)


def test_a_reason_tag_round_trips_and_fits_a_tag():
    reason = Reason("AADSTS7000222", NOW, "rotation")
    assert reason.tag() == "AADSTS7000222 2026-12-06T17:40:03Z rotation"
    assert len(reason.tag()) <= 256
    assert Reason.from_tag(reason.tag()) == reason


@pytest.mark.parametrize("value", ["", "   ", "not a code!", "AADSTS12x 2026 rotation", None])
def test_a_tag_that_is_not_a_reason_reads_as_none(value):
    assert Reason.from_tag(value) is None


def test_a_reason_says_what_when_by_whom_and_what_to_do():
    reason = Reason("AADSTS50173", NOW, "rotation")
    assert reason.summary() == ("AADSTS50173: the grant was revoked (a password change, or an "
                                "admin revoked the user's sessions) (found by rotation on "
                                "2026-12-06 17:40 UTC)")
    assert "consent again" in reason.action
    assert reason.command("contoso") == "broker invite contoso"
    assert reason.as_dict("contoso")["at"] == "2026-12-06T17:40:03+00:00"


def test_every_explanation_has_an_action_and_commands_name_the_credential():
    for explanation in [*AADSTS.values(), *BROKER.values()]:
        assert explanation.meaning and explanation.action.endswith(".")
        assert explanation.command is None or "{id}" in explanation.command


def test_an_aadsts_code_without_words_is_read_by_what_the_broker_made_of_it():
    assert "consent again" in explain("AADSTS99999", needs_consent=True).action
    assert "app registration" in explain("AADSTS99999").action


def test_errors_from_entra_carry_their_code_into_the_stored_reason():
    dead = classify({"error": "invalid_grant", "error_codes": [50173]})
    expired = classify({"error": "invalid_client", "error_codes": [7000222]})
    assert isinstance(dead, NeedsConsent) and isinstance(expired, AppMisconfigured)
    assert reason_for(dead, by="rotation", at=NOW).code == "AADSTS50173"
    assert reason_for(expired, by="validation", at=NOW).code == "AADSTS7000222"
    assert reason_for(NeedsConsent("no code"), by="edit", at=NOW).code == "unknown"


def test_the_validation_tag_holds_result_and_time_and_reads_the_older_pair():
    check = Check("ok", NOW)
    assert check.tag_changes() == {"validation": "ok 2026-12-06T17:40:03Z", "validated_at": None}
    assert Check.from_tags({"validation": check.tag()}) == check
    legacy = Check.from_tags({"validation": "no-mfa",
                              "validated_at": "2026-12-06T17:40:03.000000+00:00"})
    assert legacy == Check("no-mfa", NOW)


def test_an_active_credential_has_no_reason():
    assert credential().reason(NOW) is None


def test_a_stored_failure_is_the_reason():
    stored = credential(status="error", tags={"reason": "AADSTS7000222 2026-12-06T17:40:03Z "
                                                        "rotation"})
    reason = stored.reason(NOW)
    assert stored.status(NOW) is Status.ERROR
    assert (reason.code, reason.by, reason.at) == ("AADSTS7000222", "rotation", NOW)


@pytest.mark.parametrize(("token_days", "secret_days", "code"), [
    (10, None, "token-expiring"),
    (80, 12, "secret-expiring"),
    (10, 12, "token-and-secret-expiring"),
])
def test_expiring_says_whether_the_token_or_the_client_secret_expires(token_days, secret_days,
                                                                     code):
    found = credential(expires_in_days=token_days, secret_in_days=secret_days)
    assert found.status(NOW) is Status.EXPIRING
    reason = found.reason(NOW)
    assert reason.code == code and reason.when.startswith("expires 2026-12-")


def test_statuses_read_off_dates_say_which_date():
    assert credential(expires_in_days=-1).reason(NOW).code == "token-expired"
    assert credential(secret_in_days=-2).reason(NOW).code == "secret-expired"
    pending = credential(placeholder=True).reason(NOW)
    assert pending.code == "not-consented" and pending.when.startswith("registered")


def test_a_failure_recorded_before_reasons_existed_says_so():
    reason = credential(status="needs-consent").reason(NOW)
    assert reason.code == "unknown" and "Validate" in reason.action
