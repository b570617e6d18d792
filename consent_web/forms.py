"""Flask-WTF forms. They coerce types and bound lengths; the rules themselves live in
`CredentialSpec.validated`, whose `InvalidInput.errors` land on the same fields."""

from __future__ import annotations

from collections.abc import Mapping

from flask_wtf import FlaskForm
from wtforms import DateField, PasswordField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from broker.credentials import ENVIRONMENTS

ENVIRONMENT_LABELS = {"test": "Test", "production": "Production"}


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class CredentialFields(FlaskForm):
    environment = RadioField(
        "Environment",
        choices=[SelectChoice(e, ENVIRONMENT_LABELS.get(e, e.title())) for e in ENVIRONMENTS],
        default=ENVIRONMENTS[0],
    )
    product = StringField(
        "Product", filters=[_strip], validators=[Length(max=200)],
        description="The Microsoft product this token is used for, e.g. Microsoft CSP (NCE).",
    )
    marketplace = StringField(
        "Marketplace", filters=[_strip], validators=[Length(max=200)],
        description="The marketplace or region it serves, e.g. US or EU.",
    )
    tenant_id = StringField(
        "Partner tenant ID", filters=[_strip], validators=[Length(max=255)],
        description="The partner's Microsoft Entra tenant: a GUID or a domain such as "
                    "contoso.onmicrosoft.com.",
    )
    client_id = StringField(
        "Client ID", filters=[_strip], validators=[Optional(), Length(max=255)],
        description="The partner's own app (Application (client) ID). Leave blank to use the "
                    "CPV app.",
    )
    client_secret = PasswordField(
        "Client secret", validators=[Optional(), Length(max=1024)],
        description="The own app's client secret. Leave blank for the CPV model.",
    )
    secret_expires_on = DateField(
        "Client secret expires on", validators=[Optional()],
        description="Shown as days until expiration; you are warned before it runs out.",
    )

    SPEC_FIELDS = ("environment", "product", "marketplace", "tenant_id", "client_id",
                   "client_secret", "secret_expires_on")

    def spec_data(self, credential_id: str) -> dict:
        data = {name: self[name].data for name in self.SPEC_FIELDS}
        data["id"] = credential_id
        for name in ("client_id", "client_secret"):
            data[name] = data[name] or None
        return data

    def add_errors(self, errors: Mapping[str, str]) -> list[str]:
        """Put field errors inline (one problem per field is enough); return the ones that
        belong to no field."""
        loose = []
        for name, message in errors.items():
            if name in self._fields and name != "csrf_token":
                if not self[name].errors:
                    self[name].errors = [message]
            else:
                loose.append(message)
        return loose


class AddCredentialForm(CredentialFields):
    id = StringField(
        "Credential ID", filters=[_strip], validators=[Length(max=63)],
        description="Lower-case letters, digits and hyphens, e.g. contoso-us. It names the "
                    "Key Vault secret rt-<id> and cannot be changed later.",
    )


class EditCredentialForm(CredentialFields):
    """The id is fixed once created; a blank secret keeps the stored one."""
