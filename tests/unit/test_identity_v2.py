"""Identity v2 (digest, tokenizer digest, name, source) within the Commitments pallet's three
Raw<=128 fields, v1 still read, and the file manifest a miner serves (hostile input refused)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.identity import (
    MAX_V2_BYTES,
    MINER_SOURCE,
    IdentityError,
    ModelIdentity,
    ModelSource,
    model_digest,
    parse_identity,
)
from distill.manifest import (
    committed_identity,
    model_manifest,
    parse_manifest,
    tokenizer_digest,
)
from subnet.chain.convert import commitment_fields

D, T = "ab" * 32, "cd" * 32
LONGEST = ModelSource("hf", "n" * 40 + "/" + "m" * 55, "f" * 40)


def make_model(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.safetensors").write_bytes(b"\x00" * 64 + b"weights")
    (root / "config.json").write_text('{"vocab_size": 10}')
    (root / "tokenizer.json").write_text('{"model": {}}')
    (root / "tokenizer_config.json").write_text('{"model_max_length": 8}')
    (root / "README.md").write_text("not covered")
    return root


@pytest.mark.parametrize(
    "source", [MINER_SOURCE, ModelSource("hf", "org/model", "0" * 40), LONGEST]
)
def test_v2_round_trips_and_fits_three_raw_fields(source: ModelSource) -> None:
    ident = ModelIdentity(D, "x" * 32, "local", T, source)
    payload = ident.format()
    assert payload.startswith("v2:") and len(payload.encode()) <= MAX_V2_BYTES
    back = parse_identity(payload)
    assert (back.digest, back.tokenizer_digest, back.name, back.source) == (D, T, "x" * 32, source)
    fields = commitment_fields(payload)["fields"]
    assert 1 <= len(fields) <= 3
    assert b"".join(bytes.fromhex(v[2:]) for f in fields for v in f.values()) == payload.encode()


def test_v1_payloads_are_still_read() -> None:
    ident = parse_identity(f"v1:{D}:student:local")
    assert ident.version == "v1" and ident.source is None and ident.tokenizer_digest is None
    assert ident.format() == f"v1:{D}:student:local"


@pytest.mark.parametrize(
    "payload",
    [
        f"v2:{D}:{T}:name",  # no source
        f"v2:{D}:{T}:name:ftp:x",  # unknown source kind
        f"v2:{D}:{T}:name:hf:org/model@main",  # a branch, not a pinned commit
        f"v2:{D}:{T}:name:hf:org/../x@{'0' * 40}",  # not a repo id
        f"v2:{D}:zz:name:miner",  # bad tokenizer digest
        f"v2:{D}:{T}:na:me:miner",  # ':' in the name
        "v2:" + "x" * 400,  # too long for the pallet
        f"v1:{D}:" + "n" * 100 + ":local",  # v1 is one field
    ],
)
def test_malformed_payloads_are_one_line_errors(payload: str) -> None:
    with pytest.raises(IdentityError) as e:
        parse_identity(payload)
    assert "\n" not in str(e.value)


def test_the_manifest_is_one_read_of_what_the_digest_covers(tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    m = model_manifest(root)
    assert m.digest == model_digest(root)
    assert [f.path for f in m.files] == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert m.tokenizer_digest == tokenizer_digest(root)
    ident, again = committed_identity(root, MINER_SOURCE, name="student")
    assert again == m and ident.tokenizer_digest == m.tokenizer_digest
    assert parse_manifest(json.dumps(m.to_json()).encode()) == m


def test_the_tokenizer_digest_follows_the_vocabulary_not_the_template(tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    before = tokenizer_digest(root)
    (root / "tokenizer_config.json").write_text('{"chat_template": "{{ x }}"}')
    assert tokenizer_digest(root) == before
    (root / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    assert tokenizer_digest(root) != before
    (root / "tokenizer.json").unlink()
    with pytest.raises(IdentityError, match="no tokenizer file"):
        tokenizer_digest(root)


def _manifest(**changes: object) -> bytes:
    files = [
        {"path": "config.json", "size": 3, "sha256": "a" * 64},
        {"path": "model.safetensors", "size": 9, "sha256": "b" * 64},
    ]
    body = {"version": 1, "digest": D, "tokenizer_digest": T, "files": files, **changes}
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\xff not json", "not JSON"),
        (_manifest(version=2), "version"),
        (_manifest(files=[]), "1.."),
        (_manifest(files=[{"path": "../../etc/passwd", "size": 1, "sha256": "a" * 64}]), "plain"),
        (_manifest(files=[{"path": "/abs.safetensors", "size": 1, "sha256": "a" * 64}]), "plain"),
        (_manifest(files=[{"path": "run.sh", "size": 1, "sha256": "a" * 64}]), "covers"),
        (_manifest(files=[{"path": "config.json", "size": -1, "sha256": "a" * 64}]), "size"),
        (_manifest(files=[{"path": "config.json", "size": 1, "sha256": "A" * 64}]), "sha256"),
        (_manifest(files=[{"path": "config.json", "size": 1, "sha256": "a" * 64}] * 2), "twice"),
        (_manifest(files=[{"path": "config.json", "size": 1, "sha256": "a" * 64}]), "safetensors"),
        (b" " * (2 << 20), "larger"),
    ],
)
def test_hostile_manifests_are_refused(body: bytes, match: str) -> None:
    with pytest.raises(IdentityError, match=match):
        parse_manifest(body)


def test_a_manifest_larger_than_the_cache_is_refused() -> None:
    with pytest.raises(IdentityError, match="allowed"):
        parse_manifest(_manifest(), max_total_bytes=5)
