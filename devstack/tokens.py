"""The one signing key of devstack's authority, shared by every token endpoint and checker.

Entra's token endpoint and the managed identity endpoint issue RS256 JWTs with it; the Key
Vault emulator and the Partner Center stub accept only tokens it signed.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KEY_FILE = "signing-key.pem"
ACCESS_TOKEN_LIFETIME = 3600


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

    def jwks(self) -> dict:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.public_key))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

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
        **claims,
    ) -> tuple[str, int]:
        """Sign an access token with Entra's claim names; returns (token, expires_on epoch)."""
        now = int(time.time())
        body = {
            "aud": audience,
            "iss": self.issuer(tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "tid": tenant_id,
            "oid": subject,
            "sub": subject,
            "appid": app_id,
            "azp": app_id,
            "ver": "2.0",
            "uti": uuid.uuid4().hex[:22],
        }
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
