"""The one signing key of devstack's authority, shared by every token endpoint and checker.

Entra's token endpoint and the managed identity endpoint issue RS256 JWTs with it; the Key
Vault emulator and the Partner Center stub accept only tokens it signed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

KEY_FILE = "signing-key.pem"
ACCESS_TOKEN_LIFETIME = 3600
# v1.0 tokens (what Microsoft's first-party resources get) name the tenant on this host
V1_ISSUER_BASE = "https://sts.windows.net"


class TokenError(Exception):
    """A bearer token that devstack did not sign, or that is expired or for another audience."""


class Signer:
    def __init__(self, state_dir: Path, issuer_base: str = ""):
        path = state_dir / KEY_FILE
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            path.chmod(0o600)
        self._key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        self.public_key = self._key.public_key()
        der = self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = uuid.uuid5(uuid.NAMESPACE_OID, der.hex()).hex[:27]
        # set by the stack once the authority's URL is known
        self.issuer_base = issuer_base

    def issuer(self, tenant_id: str) -> str:
        return f"{self.issuer_base}/{tenant_id}/v2.0"

    @staticmethod
    def issuer_v1(tenant_id: str) -> str:
        return f"{V1_ISSUER_BASE}/{tenant_id}/"

    def issuers(self, tenant_id: str) -> tuple[str, str]:
        """Both issuers a devstack token for this tenant may carry (v2.0 and v1.0)."""
        return self.issuer(tenant_id), self.issuer_v1(tenant_id)

    def jwks(self) -> dict:
        """Entra's key shape: the JWK plus `x5t`, `x5c` (a self-signed certificate of the
        key) and the `issuer` template."""
        jwk = json.loads(RSAAlgorithm.to_jwk(self.public_key))
        der = self._certificate_der()
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256",
                    "x5t": base64.urlsafe_b64encode(hashlib.sha1(der).digest())  # noqa: S324
                    .rstrip(b"=").decode(),
                    "x5c": [base64.b64encode(der).decode()],
                    "issuer": f"{self.issuer_base}/{{tenantid}}/v2.0"})
        return {"keys": [jwk]}

    def _certificate_der(self) -> bytes:
        if getattr(self, "_cert_der", None) is None:
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devstack-signing")])
            start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(self.public_key)
                    .serial_number(int(hashlib.sha256(self.kid.encode()).hexdigest()[:15], 16))
                    .not_valid_before(start)
                    .not_valid_after(start + datetime.timedelta(days=3650))
                    .sign(self._key, hashes.SHA256()))
            self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        return self._cert_der

    def sign(self, claims: dict) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def access_token(
        self,
        *,
        tenant_id: str,
        audience: str,
        subject: str,
        app_id: str,
        lifetime: int = ACCESS_TOKEN_LIFETIME,
        version: str = "2.0",
        **claims,
    ) -> tuple[str, int]:
        """Sign an access token with Entra's claim names; returns (token, expires_on epoch).

        `version` "1.0" is the v1 claim set (issuer `https://sts.windows.net/<tid>/`, `appid`
        and `appidacr`, no `azp`), which Microsoft's first-party resources receive.
        """
        now = int(time.time())
        v1 = version == "1.0"
        body = {
            "aud": audience,
            "iss": self.issuer_v1(tenant_id) if v1 else self.issuer(tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "tid": tenant_id,
            "oid": subject,
            "sub": subject,
            "appid": app_id,
            "azp": app_id,
            "ver": version,
            "uti": uuid.uuid4().hex[:22],
        }
        if v1:
            del body["azp"]
        body.update({k: v for k, v in claims.items() if v is not None})
        return self.sign(body), body["exp"]

    def verify(self, token: str, audiences: tuple[str, ...]) -> dict:
        """Claims of a token this signer issued for one of `audiences`; raises TokenError."""
        try:
            return jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                audience=list(audiences),
                options={"require": ["exp", "iat", "aud", "tid"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("The token is expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("The audience of the token is not valid for this resource.") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("The token is malformed or its signature is not valid.") from exc
