"""The organic inbox (real SQLite): what the gateway writes the validator reads back byte for
byte, after its cursor; a recreated inbox restarts the cursor; pruning; and the records the
validator must not hold against a miner (not its uid any more, not our request, not signed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from neurons.validator.inbox import (
    OrganicInbox,
    OrganicRecord,
    cursor_text,
    parse_cursor,
    read_inbox,
)
from neurons.validator.organic import admit, read_ask
from subnet import auth, protocol
from subnet.chain.types import MetagraphView, NeuronView
from subnet.errors import ProtocolError, StateError
from subnet.wallets import create_wallet, hotkey_address


def _record(n: int, uid: int = 1, hotkey: str = "hk") -> OrganicRecord:
    return OrganicRecord(f"chatcmpl-{n}", uid, hotkey, "/v1/completions", b"{}", n, b"x" * n)


def test_records_read_back_after_the_cursor(tmp_path: Path) -> None:
    inbox = OrganicInbox(tmp_path / "organic.sqlite")
    ids = [inbox.add(_record(n)) for n in (1, 2, 3)]
    assert ids == [1, 2, 3]
    batch = read_inbox(inbox.path, None, 2)
    assert batch is not None and [r.id for r in batch.records] == [1, 2]
    assert batch.records[1].response == b"xx" and batch.records[1].request_nonce == 2
    cursor = cursor_text(batch.inbox, batch.records[-1].id)
    rest = read_inbox(inbox.path, cursor, 10)
    assert rest is not None and [r.id for r in rest.records] == [3]
    assert inbox.prune(parse_cursor(cursor, inbox.inbox), 100) == 2 and inbox.count() == 1
    for n in range(4, 10):
        inbox.add(_record(n))
    assert inbox.prune(0, 3) == 4 and inbox.count() == 3  # the oldest beyond the cap
    inbox.close()


def test_a_recreated_inbox_restarts_the_cursor(tmp_path: Path) -> None:
    path = tmp_path / "organic.sqlite"
    old = OrganicInbox(path)
    for n in range(5):
        old.add(_record(n))
    cursor = cursor_text(old.inbox, 5)
    old.close()
    path.unlink()
    new = OrganicInbox(path)  # the gateway's state was wiped: ids start at 1 again
    new.add(_record(9))
    batch = read_inbox(path, cursor, 10)
    assert batch is not None and [r.request_id for r in batch.records] == ["chatcmpl-9"]
    assert parse_cursor("garbage", new.inbox) == 0 and parse_cursor(None, new.inbox) == 0


def test_no_inbox_and_a_file_that_is_not_one(tmp_path: Path) -> None:
    assert read_inbox(tmp_path / "none.sqlite", None, 10) is None
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"nope" * 1000)
    with pytest.raises(StateError, match="cannot read the organic inbox"):
        read_inbox(bad, None, 10)


def test_the_asked_request_is_read_from_the_signed_body() -> None:
    body = protocol.dumps(
        {"prompt": [1, 2], "max_tokens": 8, "logprobs": 20, "subnet": {"ignore_eos": True}}
    )
    ask = read_ask(body)
    assert (ask.prompt_ids, ask.max_tokens, ask.k, ask.ignore_eos) == ((1, 2), 8, 20, True)
    for bad in (b"{}", b"[", protocol.dumps({"prompt": [], "max_tokens": 8, "logprobs": 2})):
        with pytest.raises(ProtocolError):
            read_ask(bad)


def _mg(uid: int, hotkey: str) -> MetagraphView:
    n = NeuronView(uid, hotkey, "ck", 0, 0, False, None, 0, 0, 0, 0, 0, 0, 0, 0, True)
    return MetagraphView(1, 10, 20, "o", "o", (n,))


def test_records_the_validator_cannot_hold_against_the_miner(tmp_path: Path) -> None:
    miner = create_wallet("m", "default", tmp_path / "w")
    vali = create_wallet("v", "default", tmp_path / "w")
    mk, vk = hotkey_address(miner), hotkey_address(vali)
    body = protocol.dumps({"prompt": [1], "max_tokens": 2, "logprobs": 2, "stream": True})
    chunk = protocol.sse_event({"object": "text_completion", "choices": [], "subnet": {}})
    fields = auth.sign_response(
        miner,
        status=200,
        path="/v1/completions",
        request_body=body,
        caller=vk,
        request_nonce=7,
        body_sha256=hashlib.sha256(chunk).hexdigest(),
    )
    stream = chunk + protocol.sse_event(auth.stream_signature_event(fields)) + protocol.SSE_DONE
    good = OrganicRecord("r", 0, mk, "/v1/completions", body, 7, stream)
    mg = _mg(0, mk)
    admitted = admit(good, mg, vk)
    assert not isinstance(admitted, str)  # signed for us: judged (its arrays, by the gates)
    assert admit(good, _mg(0, "someone-else"), vk) == "uid_changed"
    assert admit(good, mg, hotkey_address(miner)) == "unverifiable"  # answered another caller
    forged = OrganicRecord("r", 0, mk, "/v1/completions", body, 8, stream)  # another nonce
    assert admit(forged, mg, vk) == "unverifiable"
    cut = OrganicRecord("r", 0, mk, "/v1/completions", body, 7, chunk)  # no signature
    assert admit(cut, mg, vk) == "unverifiable"
