"""Model identity: the digest tracks every byte that decides outputs; payloads fit one Raw field."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.identity import (
    MAX_PAYLOAD_BYTES,
    IdentityError,
    ModelIdentity,
    identity_for,
    model_digest,
    parse_identity,
)


def make_model(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.safetensors").write_bytes(b"\x00" * 64 + b"weights")
    (root / "config.json").write_text('{"vocab_size": 10}')
    (root / "tokenizer.json").write_text('{"model": {}}')
    (root / "README.md").write_text("not covered")
    return root


def test_digest_is_deterministic_and_ignores_unrelated_files(tmp_path: Path) -> None:
    a = make_model(tmp_path / "a")
    b = make_model(tmp_path / "b")
    (b / "README.md").write_text("different notes")
    assert model_digest(a) == model_digest(b)


@pytest.mark.parametrize("change", ["weights", "config", "tokenizer", "rename", "extra_shard"])
def test_digest_changes_with_any_covered_byte(tmp_path: Path, change: str) -> None:
    root = make_model(tmp_path / "m")
    before = model_digest(root)
    if change == "weights":
        (root / "model.safetensors").write_bytes(b"\x00" * 64 + b"weighTs")
    elif change == "config":
        (root / "config.json").write_text('{"vocab_size": 11}')
    elif change == "tokenizer":
        (root / "tokenizer.json").write_text('{"model": {"x": 1}}')
    elif change == "rename":
        (root / "model.safetensors").rename(root / "model-00001.safetensors")
    else:
        (root / "model-2.safetensors").write_bytes(b"")
    assert model_digest(root) != before


def test_missing_weights_or_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="not found"):
        model_digest(tmp_path / "nope")
    root = make_model(tmp_path / "m")
    (root / "config.json").unlink()
    with pytest.raises(IdentityError, match=r"config\.json"):
        model_digest(root)
    (root / "model.safetensors").unlink()
    with pytest.raises(IdentityError, match="safetensors"):
        model_digest(root)


def test_payload_round_trips_and_fits_one_raw_field(tmp_path: Path) -> None:
    root = make_model(tmp_path / ("a-very-long-model-folder-name" * 3))
    ident = identity_for(root, revision="0123456789abcdef0123")
    payload = ident.format()
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    assert parse_identity(payload) == ident
    assert payload.startswith("v1:" + ident.digest + ":")


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "v1",
        "v2:" + "a" * 64 + ":n:r",
        "v1:" + "a" * 63 + ":n:r",
        "v1:" + "A" * 64 + ":n:r",
        "v1:" + "a" * 64 + "::r",
        "v1:" + "a" * 64 + ":n:",
        "v1:" + "a" * 64 + ":n:r:extra",
        "v1:" + "a" * 64 + ":na me:r",
        "v1:" + "a" * 64 + ":" + "n" * 33 + ":r",
        "v1:" + "a" * 64 + ":n:" + "r" * 17,
        "x" * 200,
    ],
)
def test_malformed_payloads_raise(payload: str) -> None:
    with pytest.raises(IdentityError):
        parse_identity(payload)


def test_identity_fields_are_validated() -> None:
    with pytest.raises(IdentityError):
        ModelIdentity(digest="zz", name="n", revision="r")
