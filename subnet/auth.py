"""btauth/1 for the miner's HTTP API, and signed responses the validator keeps as evidence.

Requests: :func:`verify_request` wraps ``bittensor.http_auth.verify`` over the exact raw body,
bound to this hotkey, with a replay store shared by all workers of the node
(:class:`SqliteNonceStore`); :func:`auth_failure` is the one place an ``AuthError`` becomes an
HTTP status and a cause code. The validator signs with :func:`sign_request` (or
:class:`BtAuthHook` for httpx-based clients such as ``openai``).

Responses are signed by the miner's hotkey over a domain-separated payload (a response
signature can never pass as a request signature)::

    subnet-response/1
    <scheme>                  sr25519 | ed25519
    <status>                  HTTP status, e.g. 200
    <path>                    request target as received, e.g. /v1/completions
    <sha256(request body)>    lowercase hex
    <request nonce>           the caller's X-Bittensor-Nonce, or "-" if unauthenticated
    <caller ss58>             the authenticated caller, or "-"
    <sha256(response body)>   lowercase hex
    <response nonce>          time_ns when signed
    <miner ss58>

Plain responses carry it in ``X-Subnet-*`` headers (:data:`RESPONSE_HEADERS`). A streamed
response cannot put a signature over a body it has not sent yet in its headers, so the last SSE
event before ``data: [DONE]`` is ``{"object": "subnet.signature", "choices": [], "subnet":
{"signature": {...same fields...}}}`` where the signed body is every byte of the stream before
that event (:func:`verify_stream` splits and checks it).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bittensor import http_auth
from bittensor.signing import resolve_signer
from bittensor.sp_core import verify as sp_verify
from bittensor.wallets import CRYPTO_TYPE_NAMES, parse_crypto_type

from subnet.errors import ProtocolError, StateError
from subnet.protocol import SIGNATURE_OBJECT, SSE_DONE

RESPONSE_DOMAIN = "subnet-response/1"
H_VERSION = "X-Subnet-Signature-Version"
H_MINER = "X-Subnet-Miner"
H_SCHEME = "X-Subnet-Scheme"
H_NONCE = "X-Subnet-Nonce"
H_CALLER = "X-Subnet-Caller"
H_REQUEST_NONCE = "X-Subnet-Request-Nonce"
H_REQUEST_SHA256 = "X-Subnet-Request-Sha256"
H_BODY_SHA256 = "X-Subnet-Body-Sha256"
H_SIGNATURE = "X-Subnet-Signature"
RESPONSE_HEADERS = (
    H_VERSION,
    H_MINER,
    H_SCHEME,
    H_NONCE,
    H_CALLER,
    H_REQUEST_NONCE,
    H_REQUEST_SHA256,
    H_BODY_SHA256,
    H_SIGNATURE,
)
_FIELDS = {  # header -> key in the streamed signature event
    H_VERSION: "version",
    H_MINER: "miner",
    H_SCHEME: "scheme",
    H_NONCE: "nonce",
    H_CALLER: "caller",
    H_REQUEST_NONCE: "request_nonce",
    H_REQUEST_SHA256: "request_sha256",
    H_BODY_SHA256: "body_sha256",
    H_SIGNATURE: "signature",
}
_NONE = "-"


class ResponseSignatureError(ProtocolError):
    """A miner response whose signature is missing, malformed or does not verify."""


# -- request side ---------------------------------------------------------------------------

AUTH_HEADERS = (
    http_auth.HEADER_VERSION,
    http_auth.HEADER_HOTKEY,
    http_auth.HEADER_RECEIVER,
    http_auth.HEADER_NONCE,
    http_auth.HEADER_CRYPTO,
    http_auth.HEADER_SIGNATURE,
)


class DuplicateAuthHeader(ProtocolError):
    """A btauth/1 header sent twice: the SDK reads a flattened dict (the last value wins), so a
    proxy in front of the miner could act on the first value while the miner verified the last.
    Refused (400) before anything reads them."""


def check_single_auth_headers(headers: Any) -> None:
    """Raise :class:`DuplicateAuthHeader` if any btauth/1 header occurs more than once.

    ``headers`` is the request's multidict (``getall``); a plain mapping cannot repeat keys.
    """
    getall = getattr(headers, "getall", None)
    if getall is None:
        return
    repeated = [h for h in AUTH_HEADERS if len(getall(h, ())) > 1]
    if repeated:
        raise DuplicateAuthHeader(f"btauth header sent more than once: {', '.join(repeated)}")


@dataclass(frozen=True)
class AuthFailure:
    status: int
    cause: str
    message: str


def auth_failure(e: http_auth.AuthError) -> AuthFailure:
    """The one mapping from btauth errors to HTTP: 403 for a request meant for another
    hotkey (it may be authentic, just not ours), 401 for everything that fails authentication."""
    cause = {
        http_auth.MalformedAuth: "auth_malformed",
        http_auth.WrongReceiver: "auth_wrong_receiver",
        http_auth.StaleRequest: "auth_stale",
        http_auth.ReplayedRequest: "auth_replayed",
        http_auth.BadSignature: "auth_bad_signature",
    }.get(type(e), "auth_failed")
    status = 403 if isinstance(e, http_auth.WrongReceiver) else 401
    return AuthFailure(status, cause, str(e))  # SDK messages never echo secrets


def verify_request(
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    self_hotkey: str,
    max_age: float,
    allowed_skew: float,
    nonce_store: http_auth.NonceStore,
) -> http_auth.Caller:
    """Authenticate one request (raises ``http_auth.AuthError``)."""
    return http_auth.verify(
        headers,
        body,
        method=method,
        path=path,
        self_hotkey_ss58=self_hotkey,
        max_age=max_age,
        allowed_skew=allowed_skew,
        require_receiver=True,
        nonce_store=nonce_store,
    )


def hotkey_signer(wallet: Any) -> Any:
    """The wallet's hotkey as a ``bittensor.Signer``, resolved once for a node's lifetime.

    Pass it wherever a request is signed: a ``bt.Wallet`` given to :func:`sign_request`
    directly is resolved again on every request, which re-reads its key files (measured
    0.70 ms a request vs 0.027 ms with the resolved signer; a validator signs one request per
    miner per task). Nothing is unlocked here: the key unlocks at the first signature.
    """
    return resolve_signer(wallet, role="hotkey")


def sign_request(
    wallet: Any, method: str, path: str, body: bytes, receiver_ss58: str
) -> dict[str, str]:
    """btauth/1 headers for a request to ``receiver_ss58`` (signed by the wallet's hotkey)."""
    return http_auth.sign(wallet, method=method, path=path, body=body, receiver_ss58=receiver_ss58)


class BtAuthHook:
    """An httpx request hook that signs every outgoing request (``openai`` clients included).

    ``httpx.AsyncClient(event_hooks={"request": [hook.async_hook]})``; the body must be
    in memory (JSON bodies are). Each send, retries included, signs a fresh nonce.
    """

    def __init__(self, wallet: Any, receiver_ss58: str) -> None:
        self.signer = hotkey_signer(wallet)  # once, not per request (see hotkey_signer)
        self.receiver_ss58 = receiver_ss58

    def __call__(self, request: Any) -> None:
        path = request.url.raw_path.decode("ascii")
        request.headers.update(
            sign_request(self.signer, request.method, path, request.content, self.receiver_ss58)
        )

    async def async_hook(self, request: Any) -> None:
        self(request)


class SqliteNonceStore:
    """Replay store in one SQLite file shared by every worker process of a node.

    ``check_and_store`` is an ``INSERT OR IGNORE`` on the (hotkey, nonce) key: exactly one
    process wins a race. Entries expire ``retention`` seconds (wall clock, shared across
    processes) after insertion; expired rows are purged every ``purge_every`` inserts.
    """

    def __init__(self, path: str | Path, retention: float, *, purge_every: int = 1000) -> None:
        self.retention = float(retention)
        self._purge_every = purge_every
        self._inserts = 0
        self._lock = threading.Lock()
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), timeout=10.0, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS nonces (hotkey TEXT NOT NULL, nonce INTEGER NOT NULL,"
                " expires REAL NOT NULL, PRIMARY KEY (hotkey, nonce)) WITHOUT ROWID"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires)")
        except sqlite3.Error as e:
            raise StateError(f"cannot open nonce store {path}: {e}") from e

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool:
        now = time.time()
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO nonces (hotkey, nonce, expires) VALUES (?, ?, ?)",
                    (hotkey_ss58, nonce_ns, now + self.retention),
                )
                fresh = cur.rowcount == 1
                self._inserts += 1
                if self._inserts % self._purge_every == 0:
                    self._db.execute("DELETE FROM nonces WHERE expires < ?", (now,))
            except sqlite3.Error as e:
                raise StateError(f"nonce store failed: {e}") from e
        return fresh

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- response side --------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _payload(f: Mapping[str, str], status: int, path: str) -> bytes:
    lines = (
        RESPONSE_DOMAIN,
        f["scheme"],
        str(status),
        path,
        f["request_sha256"],
        f["request_nonce"],
        f["caller"],
        f["body_sha256"],
        f["nonce"],
        f["miner"],
    )
    return "\n".join(lines).encode()


def sign_response(
    wallet: Any,
    *,
    status: int,
    path: str,
    request_body: bytes,
    body: bytes = b"",
    caller: str | None,
    request_nonce: int | None,
    body_sha256: str | None = None,
    nonce_ns: int | None = None,
) -> dict[str, str]:
    """Signature headers for a response (also the fields of a stream's signature event).

    Streams pass ``body_sha256`` (hashed as they were written) instead of ``body``.
    ``nonce_ns`` (default: now) is injectable so the format can be pinned by golden vectors.
    """
    signer = resolve_signer(wallet, role="hotkey")
    f = {
        "version": "1",
        "miner": signer.ss58_address,
        "scheme": CRYPTO_TYPE_NAMES[signer.crypto_type],
        "nonce": str(time.time_ns() if nonce_ns is None else nonce_ns),
        "caller": caller or _NONE,
        "request_nonce": _NONE if request_nonce is None else str(request_nonce),
        "request_sha256": _sha(request_body),
        "body_sha256": body_sha256 or _sha(body),
    }
    f["signature"] = "0x" + bytes(signer.sign(_payload(f, status, path))).hex()
    return {header: f[key] for header, key in _FIELDS.items()}


def verify_response(
    headers: Mapping[str, str],
    body: bytes,
    *,
    miner_hotkey: str,
    status: int,
    path: str,
    request_body: bytes,
    caller: str | None = None,
    request_nonce: int | None = None,
) -> None:
    """Check a response's signature headers against what the validator sent and received.

    ``caller`` / ``request_nonce``, when given, must match the signed ones (so a signed answer
    to someone else's request cannot be passed off as an answer to ours).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    f = {key: lowered.get(h.lower(), "") for h, key in _FIELDS.items()}
    _check(
        f,
        body,
        miner_hotkey=miner_hotkey,
        status=status,
        path=path,
        request_body=request_body,
        caller=caller,
        request_nonce=request_nonce,
    )


def _check(
    f: Mapping[str, str],
    body: bytes,
    *,
    miner_hotkey: str,
    status: int,
    path: str,
    request_body: bytes,
    caller: str | None,
    request_nonce: int | None,
) -> None:
    if f.get("version") != "1":
        raise ResponseSignatureError("missing or unsupported response signature version")
    if f.get("miner") != miner_hotkey:
        raise ResponseSignatureError("response signed by a different hotkey")
    if f.get("body_sha256") != _sha(body):
        raise ResponseSignatureError("response body does not match its signed hash")
    if f.get("request_sha256") != _sha(request_body):
        raise ResponseSignatureError("response is bound to a different request body")
    if caller is not None and f.get("caller") != caller:
        raise ResponseSignatureError("response is bound to a different caller")
    if request_nonce is not None and f.get("request_nonce") != str(request_nonce):
        raise ResponseSignatureError("response is bound to a different request nonce")
    try:
        crypto = parse_crypto_type(f.get("scheme", ""))
        sig = bytes.fromhex(f.get("signature", "").removeprefix("0x"))
        ok = sp_verify(_payload(f, status, path), sig, miner_hotkey, crypto)
    except (ValueError, KeyError) as e:
        raise ResponseSignatureError(f"malformed response signature: {e}") from None
    if not ok:
        raise ResponseSignatureError("response signature does not verify")


def stream_signature_event(fields: Mapping[str, str]) -> dict[str, Any]:
    """The final SSE object of a stream (``fields`` from :func:`sign_response`)."""
    return {
        "object": SIGNATURE_OBJECT,
        "choices": [],
        "subnet": {"signature": {key: fields[h] for h, key in _FIELDS.items()}},
    }


def split_stream(raw: bytes) -> tuple[bytes, dict[str, str]]:
    """A whole SSE body -> (the signed prefix, the signature fields); ProtocolError if absent."""
    if not raw.endswith(SSE_DONE):
        raise ResponseSignatureError("stream does not end with data: [DONE]")
    rest = raw[: -len(SSE_DONE)]
    previous_end = rest.rfind(b"\n\n", 0, max(len(rest) - 2, 0))
    start = 0 if previous_end < 0 else previous_end + 2
    event = rest[start:]
    if not event.startswith(b"data: ") or not event.endswith(b"\n\n"):
        raise ResponseSignatureError("no signature event before data: [DONE]")
    try:
        obj = json.loads(event[6:])
        fields = obj["subnet"]["signature"]
        if obj.get("object") != SIGNATURE_OBJECT or not isinstance(fields, dict):
            raise ValueError("not a signature object")
        # Only string fields: str() of a deeply nested value would recurse as json.loads did.
        parsed = {k: v for k, v in fields.items() if isinstance(k, str) and isinstance(v, str)}
    except Exception as e:  # any failure here comes from the miner's bytes
        # (deep nesting raises RecursionError, huge numbers ValueError, odd shapes TypeError)
        raise ResponseSignatureError(
            f"no signature event before data: [DONE] ({type(e).__name__})"
        ) from None
    return rest[:start], parsed


def verify_stream(
    raw: bytes,
    *,
    miner_hotkey: str,
    path: str,
    request_body: bytes,
    caller: str | None = None,
    request_nonce: int | None = None,
) -> bytes:
    """Verify a streamed response's trailing signature; returns the signed prefix."""
    prefix, fields = split_stream(raw)
    _check(
        fields,
        prefix,
        miner_hotkey=miner_hotkey,
        status=200,
        path=path,
        request_body=request_body,
        caller=caller,
        request_nonce=request_nonce,
    )
    return prefix
