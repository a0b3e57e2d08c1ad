"""btauth/1 glue: the shared SQLite replay store, the error mapping, and signed responses."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from bittensor import http_auth
from bittensor.sp_core import Keypair

from subnet import auth, protocol
from subnet.auth import ResponseSignatureError, SqliteNonceStore

MINER = Keypair.create_from_uri("//MinerAuthTest")
VALI = Keypair.create_from_uri("//ValiAuthTest")


def test_nonce_store_rejects_replays_and_is_shared(tmp_path: Path) -> None:
    path = tmp_path / "nonces.sqlite"
    a, b = SqliteNonceStore(path, 12.0), SqliteNonceStore(path, 12.0)
    assert a.check_and_store("hk", 1)
    assert not a.check_and_store("hk", 1)
    assert not b.check_and_store("hk", 1)  # a second worker sees the first one's nonce
    assert b.check_and_store("hk", 2) and a.check_and_store("other", 1)


def _worker(path: str, q: multiprocessing.Queue) -> None:
    store = SqliteNonceStore(path, 12.0)
    q.put(sum(store.check_and_store("hk", n) for n in range(200)))


def test_nonce_store_exactly_one_process_wins_each_nonce(tmp_path: Path) -> None:
    path = str(tmp_path / "nonces.sqlite")
    SqliteNonceStore(path, 12.0).close()
    ctx = multiprocessing.get_context("fork")
    q: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(path, q)) for _ in range(3)]
    for p in procs:
        p.start()
    wins = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(wins) == 200


def test_nonce_store_retention_is_checked_by_verify(tmp_path: Path) -> None:
    store = SqliteNonceStore(tmp_path / "n.sqlite", retention=5.0)
    body = b"{}"
    headers = auth.sign_request(VALI, "POST", "/v1/completions", body, MINER.ss58_address)
    with pytest.raises(ValueError, match="retains"):
        auth.verify_request(
            headers,
            body,
            method="POST",
            path="/v1/completions",
            self_hotkey=MINER.ss58_address,
            max_age=10.0,
            allowed_skew=2.0,
            nonce_store=store,
        )


@pytest.mark.parametrize(
    ("error", "status", "cause"),
    [
        (http_auth.MalformedAuth("x"), 401, "auth_malformed"),
        (http_auth.BadSignature("x"), 401, "auth_bad_signature"),
        (http_auth.StaleRequest("x"), 401, "auth_stale"),
        (http_auth.ReplayedRequest("x"), 401, "auth_replayed"),
        (http_auth.WrongReceiver("x"), 403, "auth_wrong_receiver"),
    ],
)
def test_auth_failure_mapping(error: http_auth.AuthError, status: int, cause: str) -> None:
    f = auth.auth_failure(error)
    assert (f.status, f.cause) == (status, cause)


def signed(body: bytes = b'{"ok":1}', status: int = 200) -> dict[str, str]:
    return auth.sign_response(
        MINER,
        status=status,
        path="/v1/completions",
        request_body=b"req",
        body=body,
        caller=VALI.ss58_address,
        request_nonce=123,
    )


def test_response_signature_verifies() -> None:
    auth.verify_response(
        signed(),
        b'{"ok":1}',
        miner_hotkey=MINER.ss58_address,
        status=200,
        path="/v1/completions",
        request_body=b"req",
        caller=VALI.ss58_address,
        request_nonce=123,
    )


@pytest.mark.parametrize(
    "tamper",
    ["body", "status", "path", "request", "caller", "nonce", "miner", "signature", "version"],
)
def test_response_signature_rejects_tampering(tamper: str) -> None:
    headers = signed()
    kw = dict(
        miner_hotkey=MINER.ss58_address,
        status=200,
        path="/v1/completions",
        request_body=b"req",
        caller=VALI.ss58_address,
        request_nonce=123,
    )
    body = b'{"ok":1}'
    if tamper == "body":
        body = b'{"ok":2}'
    elif tamper == "status":
        kw["status"] = 500
    elif tamper == "path":
        kw["path"] = "/v1/other"
    elif tamper == "request":
        kw["request_body"] = b"other"
    elif tamper == "caller":
        kw["caller"] = MINER.ss58_address
    elif tamper == "nonce":
        kw["request_nonce"] = 124
    elif tamper == "miner":
        kw["miner_hotkey"] = VALI.ss58_address
    elif tamper == "signature":
        headers[auth.H_SIGNATURE] = headers[auth.H_SIGNATURE][:-2] + "00"
    else:
        headers.pop(auth.H_VERSION)
    with pytest.raises(ResponseSignatureError):
        auth.verify_response(headers, body, **kw)


def stream_bytes(events: list[dict]) -> bytes:
    prefix = b"".join(protocol.sse_event(e) for e in events)
    fields = auth.sign_response(
        MINER,
        status=200,
        path="/v1/completions",
        request_body=b"req",
        caller=VALI.ss58_address,
        request_nonce=5,
        body_sha256=__import__("hashlib").sha256(prefix).hexdigest(),
    )
    return prefix + protocol.sse_event(auth.stream_signature_event(fields)) + protocol.SSE_DONE


def test_stream_signature_covers_every_prior_byte() -> None:
    raw = stream_bytes([{"a": 1}, {"b": 2}])
    prefix = auth.verify_stream(
        raw,
        miner_hotkey=MINER.ss58_address,
        path="/v1/completions",
        request_body=b"req",
        caller=VALI.ss58_address,
        request_nonce=5,
    )
    assert prefix == protocol.sse_event({"a": 1}) + protocol.sse_event({"b": 2})
    tampered = raw.replace(b'"b":2', b'"b":3')
    with pytest.raises(ResponseSignatureError):
        auth.verify_stream(
            tampered, miner_hotkey=MINER.ss58_address, path="/v1/completions", request_body=b"req"
        )
    for broken in (
        raw[: -len(protocol.SSE_DONE)],
        protocol.sse_event({"a": 1}) + protocol.SSE_DONE,
        b"",
    ):
        with pytest.raises(ResponseSignatureError):
            auth.verify_stream(
                broken, miner_hotkey=MINER.ss58_address, path="/v1/completions", request_body=b"req"
            )


def test_empty_stream_prefix_verifies() -> None:
    raw = stream_bytes([])
    assert (
        auth.verify_stream(
            raw, miner_hotkey=MINER.ss58_address, path="/v1/completions", request_body=b"req"
        )
        == b""
    )


def test_hotkey_signer_resolves_the_wallet_once(tmp_path: Path) -> None:
    """A node resolves its hotkey once (``hotkey_signer``): requests signed with it verify as
    the wallet's hotkey, and it never goes back to the key files, which a bare wallet re-reads
    on every request (0.7 ms each; the validator signs one request per miner per task)."""
    from subnet.wallets import create_wallet

    wallet = create_wallet("vali", "default", tmp_path / "wallets")
    signer = auth.hotkey_signer(wallet)
    body = b'{"prompt":[1,2,3]}'
    headers = auth.sign_request(signer, "POST", "/v1/completions", body, MINER.ss58_address)
    caller = auth.verify_request(
        headers,
        body,
        method="POST",
        path="/v1/completions",
        self_hotkey=MINER.ss58_address,
        max_age=10.0,
        allowed_skew=2.0,
        nonce_store=SqliteNonceStore(tmp_path / "nonces.sqlite", 12.0),
    )
    assert caller.hotkey_ss58 == wallet.hotkey.ss58_address
    key_file = Path(wallet.hotkey_file.path)
    key_file.rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError):  # the bare wallet reads the file again: it is gone
        auth.sign_request(wallet, "POST", "/v1/completions", body, MINER.ss58_address)
    again = auth.sign_request(signer, "POST", "/v1/completions", body, MINER.ss58_address)
    assert again["X-Bittensor-Hotkey"] == wallet.hotkey.ss58_address
