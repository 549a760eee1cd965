"""Kalshi request signing: RSA-PSS over ``timestamp_ms + METHOD + path``, and its verification.

A request carries ``KALSHI-ACCESS-KEY`` (the key id), ``KALSHI-ACCESS-TIMESTAMP`` (Unix ms) and
``KALSHI-ACCESS-SIGNATURE``: base64 of RSA-PSS (SHA-256, MGF1-SHA256, salt length 32) over the
timestamp, the upper-case method and the path — without host and without query string
(``/trade-api/v2/portfolio/orders``). The WebSocket upgrade signs ``GET /trade-api/ws/v2``, afresh on
every reconnect.

Where the key comes from (:func:`load_signer`): arguments (from settings) first, then the environment —
``KALSHI_API_KEY_ID``, and ``KALSHI_PRIVATE_KEY_PATH`` (a PEM file) or ``KALSHI_PRIVATE_KEY`` (the PEM
text; ``\\n`` escapes allowed).

The private key never leaves this module: a :class:`Signer`'s ``repr``/``str`` name only the key id's
first characters, it refuses to be pickled (load it in each process that signs, like logging), and no
error raised here carries key material — not in its message, nor in a chained exception or a frame's
locals (key text is held in a :class:`_Secret` whose ``repr`` is redacted).
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "ENV_KEY_ID",
    "ENV_PRIVATE_KEY",
    "ENV_PRIVATE_KEY_PATH",
    "HEADER_KEY",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "WS_PATH",
    "AuthError",
    "Signer",
    "Verifier",
    "load_signer",
    "signed_message",
]

ENV_KEY_ID: Final = "KALSHI_API_KEY_ID"
ENV_PRIVATE_KEY_PATH: Final = "KALSHI_PRIVATE_KEY_PATH"
ENV_PRIVATE_KEY: Final = "KALSHI_PRIVATE_KEY"
HEADER_KEY: Final = "KALSHI-ACCESS-KEY"
HEADER_TIMESTAMP: Final = "KALSHI-ACCESS-TIMESTAMP"
HEADER_SIGNATURE: Final = "KALSHI-ACCESS-SIGNATURE"
WS_PATH: Final = "/trade-api/ws/v2"
SALT_LENGTH: Final = 32

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT_LENGTH)


class AuthError(Exception):
    """Signing cannot be set up or a signature is refused; the message never holds key material."""


class _Secret:
    """Key text that must not be shown: its repr is redacted, so it cannot leak through a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __reduce__(self) -> object:
        raise TypeError("key material is not picklable")


def signed_message(timestamp_ms: int | str, method: str, path: str) -> bytes:
    """What is signed: ``timestamp + METHOD + path``, the path stripped of scheme, host, query and fragment."""
    parts = urlsplit(path)
    bare = parts.path if parts.scheme or parts.netloc else path.split("?", 1)[0].split("#", 1)[0]
    return f"{timestamp_ms}{method.upper()}{bare}".encode()


def _abbreviated(key_id: str) -> str:
    return key_id[:8] + "…" if len(key_id) > 8 else key_id


class Signer:
    """Signs requests with one API key. Holds the private key; shows only the key id's first characters."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key_id: str, private_key: rsa.RSAPrivateKey) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise AuthError(f"key {_abbreviated(key_id)!r}: the private key is not an RSA key")
        self.key_id = key_id
        self._key = private_key

    @classmethod
    def from_pem(cls, key_id: str, pem: bytes | str, *, origin: str = "the PEM text") -> Signer:
        """A signer from PEM text (unencrypted PKCS#8 or PKCS#1)."""
        secret = _Secret(pem.encode() if isinstance(pem, str) else bytes(pem))
        del pem
        return cls(key_id, _load_private_key(secret, origin))

    @classmethod
    def from_file(cls, key_id: str, path: str | os.PathLike[str]) -> Signer:
        """A signer from a PEM file."""
        try:
            secret = _Secret(Path(path).read_bytes())
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        else:
            return cls(key_id, _load_private_key(secret, f"private key file {os.fspath(path)!r}"))
        raise AuthError(f"private key file {os.fspath(path)!r}: cannot read it ({reason})")

    def sign(self, timestamp_ms: int | str, method: str, path: str) -> str:
        """The base64 RSA-PSS signature of :func:`signed_message`."""
        signature = self._key.sign(signed_message(timestamp_ms, method, path), _PSS, hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")

    def headers(self, method: str, path: str, timestamp_ms: int) -> dict[str, str]:
        """The three authentication headers of one request (``path`` may be a full URL)."""
        return {
            HEADER_KEY: self.key_id,
            HEADER_TIMESTAMP: str(timestamp_ms),
            HEADER_SIGNATURE: self.sign(timestamp_ms, method, path),
        }

    def ws_headers(self, timestamp_ms: int) -> dict[str, str]:
        """The headers of the WebSocket upgrade (``GET /trade-api/ws/v2``)."""
        return self.headers("GET", WS_PATH, timestamp_ms)

    def verifier(self) -> Verifier:
        """The verifier of this key's signatures (its public half)."""
        return Verifier(self._key.public_key())

    def public_key_pem(self) -> bytes:
        """The public key, PEM (SubjectPublicKeyInfo): what an exchange is configured with."""
        return self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def __repr__(self) -> str:
        return f"Signer(key_id={_abbreviated(self.key_id)!r}, private_key=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> object:
        raise TypeError("a Signer is not picklable: load it in the process that signs (load_signer)")


def _load_private_key(secret: _Secret, origin: str) -> rsa.RSAPrivateKey:
    """Parse the key; on failure raise outside the ``except`` so no chained exception carries its text."""
    key = None
    with contextlib.suppress(ValueError, TypeError, UnsupportedAlgorithm):
        key = serialization.load_pem_private_key(secret.reveal(), password=None)
    if key is None:
        raise AuthError(f"{origin}: not an unencrypted PEM private key")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthError(f"{origin}: not an RSA private key")
    return key


def load_signer(
    key_id: str | None = None,
    private_key_path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Signer:
    """A signer from arguments (settings) first, then ``KALSHI_API_KEY_ID`` with ``KALSHI_PRIVATE_KEY_PATH``
    or ``KALSHI_PRIVATE_KEY`` from ``env`` (default ``os.environ``)."""
    source = os.environ if env is None else env
    key_id = key_id or source.get(ENV_KEY_ID)
    path = private_key_path or source.get(ENV_PRIVATE_KEY_PATH)
    text = source.get(ENV_PRIVATE_KEY)
    secret = _Secret(text.replace("\\n", "\n").encode()) if text else None
    del source, env, text  # no frame that may raise below holds the environment or the key text
    if not key_id:
        raise AuthError(f"no Kalshi API key id: set {ENV_KEY_ID} or pass key_id")
    if path:
        return Signer.from_file(key_id, path)
    if secret is not None:
        return Signer(key_id, _load_private_key(secret, f"environment variable {ENV_PRIVATE_KEY}"))
    raise AuthError(f"no Kalshi private key: set {ENV_PRIVATE_KEY_PATH} (a PEM file) or {ENV_PRIVATE_KEY} "
                    "(the PEM text), or pass private_key_path")


class Verifier:
    """Checks request signatures against one public key (the local exchange's side).

    ``salt_length`` is the PSS salt length required; None (the default) accepts any, so clients that
    sign with the maximum salt length, as some do, are accepted too.
    """

    __slots__ = ("_key", "_pss")

    def __init__(self, public_key: rsa.RSAPublicKey, *, salt_length: int | None = None) -> None:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise AuthError("the public key is not an RSA key")
        self._key = public_key
        self._pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                salt_length=padding.PSS.AUTO if salt_length is None else salt_length)

    @classmethod
    def from_pem(cls, pem: bytes | str, *, salt_length: int | None = None) -> Verifier:
        try:
            key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            key = None
        if not isinstance(key, rsa.RSAPublicKey):
            raise AuthError("not a PEM RSA public key")
        return cls(key, salt_length=salt_length)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, salt_length: int | None = None) -> Verifier:
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise AuthError(f"public key file {os.fspath(path)!r}: cannot read it ({exc.strerror})") from None
        return cls.from_pem(pem, salt_length=salt_length)

    def verify(self, timestamp_ms: int | str, method: str, path: str, signature_b64: str) -> bool:
        """True if ``signature_b64`` signs this request with the key."""
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            self._key.verify(signature, signed_message(timestamp_ms, method, path), self._pss, hashes.SHA256())
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def check(self, headers: Mapping[str, str], method: str, path: str, *, now_ms: int,
              max_skew_ms: int = 30_000) -> str | None:
        """None if the request's headers authenticate it at ``now_ms``, else why not (for a 401 body)."""
        lower = {k.lower(): v for k, v in headers.items()}
        missing = [h for h in (HEADER_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE) if h.lower() not in lower]
        if missing:
            return f"missing header {', '.join(missing)}"
        stamp = lower[HEADER_TIMESTAMP.lower()]
        if not stamp.isdigit():
            return f"{HEADER_TIMESTAMP} {stamp[:32]!r} is not Unix milliseconds"
        if abs(int(stamp) - now_ms) > max_skew_ms:
            return f"{HEADER_TIMESTAMP} is more than {max_skew_ms} ms away from the server's clock"
        if not self.verify(stamp, method, path, lower[HEADER_SIGNATURE.lower()]):
            return "signature does not verify"
        return None

    def __repr__(self) -> str:
        return "Verifier(<RSA public key>)"
