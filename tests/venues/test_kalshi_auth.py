"""Kalshi request signing: the exact signed string, RSA-PSS round trips, key sources, and no key leaks anywhere."""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import pickle
import re
import traceback

import pytest
import structlog
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from config import LoggingSettings
from runtime.logger import configure_logging, get_logger
from runtime.venues.kalshi.auth import (
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    AuthError,
    Signer,
    Verifier,
    load_signer,
    signed_message,
)

KEY_ID = "a1b2c3d4-e5f6-7788-99aa-bbccddeeff00"
TS = 1_700_000_000_123


@pytest.fixture(scope="module")
def signer(pem) -> Signer:
    return Signer.from_pem(KEY_ID, pem)


def secrets_of(pem: bytes, private_key: rsa.RSAPrivateKey) -> list[str]:
    """Every form the key could leak in: PEM lines, the whole base64 body, the private exponent and primes."""
    lines = [line for line in pem.decode().splitlines() if "-----" not in line]
    numbers = private_key.private_numbers()
    return [*lines, "".join(lines), str(numbers.d), str(numbers.p), str(numbers.q), hex(numbers.d)[2:40]]


# -- what is signed ------------------------------------------------------------------------------------------
def test_the_signed_string_is_timestamp_method_and_path():
    assert signed_message(TS, "post", "/trade-api/v2/portfolio/events/orders") == (
        b"1700000000123POST/trade-api/v2/portfolio/events/orders")


def test_the_query_string_is_not_signed():
    assert signed_message(TS, "GET", "/trade-api/v2/portfolio/fills?min_ts=1700000000&limit=100") == (
        b"1700000000123GET/trade-api/v2/portfolio/fills")


def test_the_host_of_a_full_url_is_not_signed():
    assert signed_message(TS, "DELETE", "https://external-api.kalshi.com/trade-api/v2/portfolio/events/orders/o-1?x=1") == (
        b"1700000000123DELETE/trade-api/v2/portfolio/events/orders/o-1")


def test_the_websocket_upgrade_signs_get_and_the_ws_path(signer):
    headers = signer.ws_headers(TS)
    assert signer.verifier().verify(TS, "GET", "/trade-api/ws/v2", headers[HEADER_SIGNATURE])


# -- signatures ----------------------------------------------------------------------------------------------
def test_a_signature_is_rsa_pss_sha256_with_a_32_byte_salt(signer, private_key):
    """Checked with cryptography directly, requiring salt length 32 exactly."""
    signature = base64.b64decode(signer.sign(TS, "GET", "/trade-api/v2/portfolio/balance"))
    private_key.public_key().verify(signature, b"1700000000123GET/trade-api/v2/portfolio/balance",
                                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())


def test_the_headers_carry_key_id_timestamp_and_signature(signer):
    headers = signer.headers("POST", "/trade-api/v2/portfolio/events/orders", TS)
    assert set(headers) == {HEADER_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE}
    assert (headers[HEADER_KEY], headers[HEADER_TIMESTAMP]) == (KEY_ID, "1700000000123")
    assert Verifier.from_pem(signer.public_key_pem()).verify(
        TS, "POST", "/trade-api/v2/portfolio/events/orders", headers[HEADER_SIGNATURE])


@pytest.mark.parametrize(("ts", "method", "path"), [
    (TS + 1, "GET", "/trade-api/v2/portfolio/balance"), (TS, "POST", "/trade-api/v2/portfolio/balance"),
    (TS, "GET", "/trade-api/v2/portfolio/positions")])
def test_a_signature_does_not_verify_for_another_request(signer, ts, method, path):
    signature = signer.sign(TS, "GET", "/trade-api/v2/portfolio/balance")
    assert not signer.verifier().verify(ts, method, path, signature)


@pytest.mark.parametrize("signature", ["not base64!", "", base64.b64encode(b"x" * 256).decode()])
def test_a_garbage_signature_does_not_verify(signer, signature):
    assert not signer.verifier().verify(TS, "GET", "/x", signature)


def test_a_maximum_salt_signature_verifies_by_default_but_not_when_32_is_required(private_key, signer):
    """Some third-party clients sign with PSS.MAX_LENGTH; the exchange accepts them unless told to be strict."""
    message = signed_message(TS, "GET", "/trade-api/ws/v2")
    signature = base64.b64encode(private_key.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                                       salt_length=padding.PSS.MAX_LENGTH),
                                                  hashes.SHA256())).decode()
    pem = signer.public_key_pem()
    assert Verifier.from_pem(pem).verify(TS, "GET", "/trade-api/ws/v2", signature)
    assert not Verifier.from_pem(pem, salt_length=32).verify(TS, "GET", "/trade-api/ws/v2", signature)


def test_the_exchange_checks_request_headers_and_says_why_it_refuses(signer):
    verifier = signer.verifier()
    good = signer.headers("GET", "/trade-api/v2/portfolio/balance", TS)
    assert verifier.check(good, "GET", "/trade-api/v2/portfolio/balance?x=1", now_ms=TS + 1_000) is None
    assert verifier.check({k.lower(): v for k, v in good.items()}, "GET", "/trade-api/v2/portfolio/balance",
                          now_ms=TS) is None
    assert verifier.check({HEADER_KEY: KEY_ID}, "GET", "/", now_ms=TS) == (
        "missing header KALSHI-ACCESS-TIMESTAMP, KALSHI-ACCESS-SIGNATURE")
    assert verifier.check(good, "GET", "/trade-api/v2/portfolio/balance", now_ms=TS + 60_000) == (
        "KALSHI-ACCESS-TIMESTAMP is more than 30000 ms away from the server's clock")
    assert verifier.check({**good, HEADER_TIMESTAMP: "soon"}, "GET", "/", now_ms=TS) == (
        "KALSHI-ACCESS-TIMESTAMP 'soon' is not Unix milliseconds")
    assert verifier.check(good, "GET", "/trade-api/v2/portfolio/orders", now_ms=TS) == "signature does not verify"


# -- where the key comes from ------------------------------------------------------------------------------------
def test_a_signer_loads_from_the_key_id_and_pem_file_in_the_environment(tmp_path, pem, signer):
    path = tmp_path / "kalshi.pem"
    path.write_bytes(pem)
    loaded = load_signer(env={"KALSHI_API_KEY_ID": KEY_ID, "KALSHI_PRIVATE_KEY_PATH": str(path)})
    assert loaded.key_id == KEY_ID and loaded.public_key_pem() == signer.public_key_pem()


def test_a_signer_loads_from_pem_text_in_the_environment_with_escaped_newlines(pem, signer):
    loaded = load_signer(env={"KALSHI_API_KEY_ID": KEY_ID, "KALSHI_PRIVATE_KEY": pem.decode().replace("\n", "\\n")})
    assert loaded.public_key_pem() == signer.public_key_pem()


def test_arguments_from_settings_win_over_the_environment(tmp_path, pem):
    path = tmp_path / "k.pem"
    path.write_bytes(pem)
    loaded = load_signer("from-settings", path, env={"KALSHI_API_KEY_ID": "from-env", "KALSHI_PRIVATE_KEY_PATH": "/nope"})
    assert loaded.key_id == "from-settings"


@pytest.mark.parametrize(("env", "message"), [
    ({}, "no Kalshi API key id: set KALSHI_API_KEY_ID or pass key_id"),
    ({"KALSHI_API_KEY_ID": "k"}, "no Kalshi private key: set KALSHI_PRIVATE_KEY_PATH (a PEM file) or "
                                 "KALSHI_PRIVATE_KEY (the PEM text), or pass private_key_path"),
    ({"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY_PATH": "/no/such/key.pem"},
     f"private key file '/no/such/key.pem': cannot read it ({os.strerror(errno.ENOENT)})"),
    ({"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": "hunter2"},
     "environment variable KALSHI_PRIVATE_KEY: not an unencrypted PEM private key"),
])
def test_a_missing_or_bad_key_is_a_clear_error(env, message):
    with pytest.raises(AuthError) as info:
        load_signer(env=env)
    assert str(info.value) == message


def test_a_key_that_is_not_rsa_is_refused():
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(AuthError, match="^the PEM text: not an RSA private key$"):
        Signer.from_pem("k", pem)


# -- the key never leaks ------------------------------------------------------------------------------------------
def test_the_key_is_in_no_repr_or_str(signer, pem, private_key):
    shown = repr(signer) + str(signer) + f"{signer}" + repr(signer.verifier())
    assert repr(signer) == "Signer(key_id='a1b2c3d4…', private_key=<redacted>)"
    assert not [s for s in secrets_of(pem, private_key) if s in shown]


def test_a_signer_cannot_be_pickled(signer):
    """It would carry the key across processes; each process loads its own."""
    with pytest.raises(TypeError, match="^a Signer is not picklable: load it in the process that signs"):
        pickle.dumps(signer)


def test_an_error_about_a_damaged_key_holds_none_of_it(pem, private_key):
    """Not in the message, not in a chained exception, not in the formatted traceback."""
    lines = pem.decode().splitlines()
    damaged = "\n".join([lines[0], *lines[1:-2], "!!!" + lines[-2], lines[-1]])
    with pytest.raises(AuthError) as info:
        load_signer(env={"KALSHI_API_KEY_ID": KEY_ID, "KALSHI_PRIVATE_KEY": damaged})
    assert info.value.__cause__ is None and info.value.__context__ is None
    text = "".join(traceback.format_exception(info.value))
    assert not [s for s in secrets_of(pem, private_key) if s in text]


def test_no_frame_of_a_failed_load_holds_the_key_in_its_locals(pem, private_key):
    """A renderer that shows locals (rich tracebacks) shows nothing secret: key text is held redacted."""
    env = {"KALSHI_API_KEY_ID": KEY_ID, "KALSHI_PRIVATE_KEY": pem.decode()[:200] + "%%%" + pem.decode()[200:]}
    with pytest.raises(AuthError) as info:
        load_signer(env=env)
    tb = info.value.__traceback__.tb_next  # the frames inside auth.py, not this test's
    shown = []
    while tb is not None:
        shown.append(repr(tb.tb_frame.f_locals))
        tb = tb.tb_next
    assert len(shown) >= 2 and "<redacted>" in "".join(shown)
    assert not [s for s in secrets_of(pem, private_key) if s in "".join(shown)]


@pytest.fixture
def captured_logs():
    """Structlog configured as the CLI configures it (JSON lines), into a buffer; restored afterwards."""
    saved = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="debug", format="json"), stream=buffer)
    yield buffer
    structlog.configure(**saved)


def test_the_key_is_in_no_log_output(captured_logs, tmp_path, pem, private_key, signer):
    """Logging the signer, its headers, and a failed load with its traceback shows no key material."""
    log = get_logger("kalshi-test")
    log.info("signer ready", signer=signer, headers=signer.headers("GET", "/trade-api/ws/v2", TS))
    bad = tmp_path / "bad.pem"
    bad.write_text(pem.decode().replace("-----END", "garbage\n-----END"))
    try:
        load_signer(env={"KALSHI_API_KEY_ID": KEY_ID, "KALSHI_PRIVATE_KEY_PATH": str(bad)})
    except AuthError:
        log.exception("could not load the key")
    try:
        Signer.from_pem(KEY_ID, pem.decode()[:200] + "%%%" + pem.decode()[200:])
    except AuthError as exc:
        log.error("could not load the key", error=exc, exc_info=True)
    output = captured_logs.getvalue()
    assert "signer ready" in output and output.count("could not load the key") == 2
    signers = [json.loads(line).get("signer") for line in output.splitlines()]  # however the renderer escapes "…"
    assert "Signer(key_id='a1b2c3d4…', private_key=<redacted>)" in signers
    assert re.search(r"not an unencrypted PEM private key", output)
    assert not [s for s in secrets_of(pem, private_key) if s in output]
