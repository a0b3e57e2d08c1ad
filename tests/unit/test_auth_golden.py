"""Golden vectors for the miner's response signature (``subnet-response/1``).

Validators keep a miner's signed answer as evidence, possibly for months, and check it with
code that may be newer than the miner's: the signed payload, the header names and values and
the streamed signature event are a wire format. These vectors pin them byte for byte with
fixed keys, a fixed nonce and fixed bodies. A change that breaks one of them needs a new
``RESPONSE_DOMAIN`` / signature version (so old evidence still verifies under the old one), not
an updated fixture: changing the signer and the verifier together would pass every round-trip
test and still orphan every record already kept.

ed25519 signatures are deterministic, so its signature bytes are pinned; sr25519 signatures are
randomised, so for sr25519 the payload is pinned and a signature recorded once must keep
verifying.
"""

from __future__ import annotations

from bittensor.sp_core import Keypair

from subnet import auth, protocol

MINER_ED = Keypair.create_from_seed(bytes.fromhex("11" * 32), crypto_type=0)
MINER_SR = Keypair.create_from_seed(bytes.fromhex("33" * 32), crypto_type=1)
CALLER = Keypair.create_from_seed(bytes.fromhex("22" * 32), crypto_type=1).ss58_address
PATH = "/v1/completions"
REQUEST = b'{"prompt":[1,2,3]}'
BODY = b'{"ok":true}'
REQUEST_NONCE = 1_700_000_000_000_000_001
NONCE = 1_700_000_000_123_456_789

EXPECTED_ED25519 = {
    "X-Subnet-Signature-Version": "1",
    "X-Subnet-Miner": "5Gmp1LHh81mEqwCDPP7ug46TTMXYo3ZuwVHTeNhP1Gp2jLKV",
    "X-Subnet-Scheme": "ed25519",
    "X-Subnet-Nonce": "1700000000123456789",
    "X-Subnet-Caller": "5Fpfx4iDtrrY99VGkQnLXASytC2y9Z3o8KUyTtD4w7o5SZcA",
    "X-Subnet-Request-Nonce": "1700000000000000001",
    "X-Subnet-Request-Sha256": "e18679ad75638a7f5f1d8745397eaa8e6f03348af0b6f103add12341e8aaea5a",
    "X-Subnet-Body-Sha256": "4062edaf750fb8074e7e83e0c9028c94e32468a8b6f1614774328ef045150f93",
    "X-Subnet-Signature": "0xb5201d4abb7a130f52c20c92ebae1670a348db85dda4969c67a524820c7b3927"
    "5444dbdbb2fe49020e363ea0ff5e343aac6f9d1a5faa676242b3dba884a29207",
}
EXPECTED_PAYLOAD_ED25519 = (
    b"subnet-response/1\n"
    b"ed25519\n"
    b"200\n"
    b"/v1/completions\n"
    b"e18679ad75638a7f5f1d8745397eaa8e6f03348af0b6f103add12341e8aaea5a\n"
    b"1700000000000000001\n"
    b"5Fpfx4iDtrrY99VGkQnLXASytC2y9Z3o8KUyTtD4w7o5SZcA\n"
    b"4062edaf750fb8074e7e83e0c9028c94e32468a8b6f1614774328ef045150f93\n"
    b"1700000000123456789\n"
    b"5Gmp1LHh81mEqwCDPP7ug46TTMXYo3ZuwVHTeNhP1Gp2jLKV"
)
# Recorded once from sign_response(MINER_SR, ...) with the inputs above.
RECORDED_SR25519 = (
    "0x7aea0cc190e52a4966f05f0f7a2e80684705fa1ee9101bd6ea0947a414ec1868"
    "ed7f8207ce575e415ee247dc737ef07b91d897968b97900e6d314e9949a66b86"
)
EXPECTED_STREAM_EVENT = (
    b'data: {"object":"subnet.signature","choices":[],"subnet":{"signature":{"version":"1",'
    b'"miner":"5Gmp1LHh81mEqwCDPP7ug46TTMXYo3ZuwVHTeNhP1Gp2jLKV","scheme":"ed25519",'
    b'"nonce":"1700000000123456789","caller":"5Fpfx4iDtrrY99VGkQnLXASytC2y9Z3o8KUyTtD4w7o5SZcA",'
    b'"request_nonce":"1700000000000000001",'
    b'"request_sha256":"e18679ad75638a7f5f1d8745397eaa8e6f03348af0b6f103add12341e8aaea5a",'
    b'"body_sha256":"4062edaf750fb8074e7e83e0c9028c94e32468a8b6f1614774328ef045150f93",'
    b'"signature":"0xb5201d4abb7a130f52c20c92ebae1670a348db85dda4969c67a524820c7b39275444dbdbb2fe'
    b'49020e363ea0ff5e343aac6f9d1a5faa676242b3dba884a29207"}}}\n\n'
)


def _sign(key: Keypair) -> dict[str, str]:
    return auth.sign_response(
        key,
        status=200,
        path=PATH,
        request_body=REQUEST,
        body=BODY,
        caller=CALLER,
        request_nonce=REQUEST_NONCE,
        nonce_ns=NONCE,
    )


def _fields(headers: dict[str, str]) -> dict[str, str]:
    return {key: headers[header] for header, key in auth._FIELDS.items()}


def test_the_ed25519_response_headers_are_exactly_the_golden_bytes() -> None:
    headers = _sign(MINER_ED)
    assert headers == EXPECTED_ED25519
    assert list(headers) == list(auth.RESPONSE_HEADERS)  # the order headers are written in


def test_the_signed_payload_is_exactly_the_golden_bytes() -> None:
    assert auth._payload(_fields(_sign(MINER_ED)), 200, PATH) == EXPECTED_PAYLOAD_ED25519
    sr = _fields(_sign(MINER_SR))
    assert auth._payload(sr, 200, PATH) == EXPECTED_PAYLOAD_ED25519.replace(
        b"ed25519", b"sr25519"
    ).replace(MINER_ED.ss58_address.encode(), MINER_SR.ss58_address.encode())


def test_golden_signatures_verify_and_any_changed_byte_fails() -> None:
    auth.verify_response(
        EXPECTED_ED25519,
        BODY,
        miner_hotkey=MINER_ED.ss58_address,
        status=200,
        path=PATH,
        request_body=REQUEST,
        caller=CALLER,
        request_nonce=REQUEST_NONCE,
    )
    recorded = {**_sign(MINER_SR), "X-Subnet-Signature": RECORDED_SR25519}
    auth.verify_response(
        recorded,
        BODY,
        miner_hotkey=MINER_SR.ss58_address,
        status=200,
        path=PATH,
        request_body=REQUEST,
    )
    for header in ("X-Subnet-Nonce", "X-Subnet-Request-Nonce", "X-Subnet-Caller"):
        tampered = {**EXPECTED_ED25519, header: EXPECTED_ED25519[header] + "0"}
        try:
            auth.verify_response(
                tampered,
                BODY,
                miner_hotkey=MINER_ED.ss58_address,
                status=200,
                path=PATH,
                request_body=REQUEST,
            )
        except auth.ResponseSignatureError:
            continue
        raise AssertionError(f"a changed {header} still verified")


def test_the_streamed_signature_event_is_exactly_the_golden_bytes() -> None:
    event = auth.stream_signature_event(_sign(MINER_ED))
    assert protocol.sse_event(event) == EXPECTED_STREAM_EVENT
    stream = b'data: {"x":1}\n\n' + EXPECTED_STREAM_EVENT + protocol.SSE_DONE
    prefix, fields = auth.split_stream(stream)
    assert prefix == b'data: {"x":1}\n\n' and fields == _fields(EXPECTED_ED25519)
