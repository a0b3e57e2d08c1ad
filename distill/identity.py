"""Model identity: a digest of the files that decide a model's outputs, and its chain payload.

A miner commits ``v1:<sha256 hex>:<name>:<revision>`` on chain (Commitments pallet); a
validator that loads the committed files recomputes the digest and compares. The payload fits
one ``Raw`` commitment field (the pallet's ``Data`` enum stops at ``Raw128``), so the
commitment is a single field: :data:`MAX_PAYLOAD_BYTES` is 128 and the format keeps ~10 bytes
spare.

The digest covers, in sorted relative-path order, every ``*.safetensors`` file plus the config
and tokenizer files that are present (:data:`METADATA_FILES`); each file contributes its path,
its size and its bytes, so renaming or moving bytes between files changes the digest.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from subnet.errors import ProtocolError

VERSION = "v1"
MAX_PAYLOAD_BYTES = 128
MAX_NAME = 32
MAX_REVISION = 16
_TOKEN = re.compile(r"^[A-Za-z0-9._/+-]+$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
METADATA_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
_CHUNK = 1 << 20


class IdentityError(ProtocolError):
    """A malformed identity payload, or a model folder that cannot be digested."""


@dataclass(frozen=True)
class ModelIdentity:
    digest: str  # sha256 hex of the model files
    name: str
    revision: str

    def __post_init__(self) -> None:
        if not _DIGEST.match(self.digest):
            raise IdentityError("digest must be 64 lowercase hex characters")
        for label, value, limit in (
            ("name", self.name, MAX_NAME),
            ("revision", self.revision, MAX_REVISION),
        ):
            if not 0 < len(value) <= limit or not _TOKEN.match(value):
                raise IdentityError(
                    f"{label} must be 1..{limit} characters of [A-Za-z0-9._/+-], got {value!r}"
                )

    def format(self) -> str:
        return format_identity(self)


def format_identity(identity: ModelIdentity) -> str:
    payload = f"{VERSION}:{identity.digest}:{identity.name}:{identity.revision}"
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES  # guaranteed by the field limits
    return payload


def parse_identity(payload: str) -> ModelIdentity:
    """``v1:<digest>:<name>:<revision>`` -> ModelIdentity; IdentityError if malformed."""
    if not isinstance(payload, str) or len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise IdentityError(f"identity payload must be a string of <= {MAX_PAYLOAD_BYTES} bytes")
    parts = payload.split(":")
    if len(parts) != 4 or parts[0] != VERSION:
        raise IdentityError(f"identity payload must look like {VERSION}:<digest>:<name>:<rev>")
    return ModelIdentity(digest=parts[1], name=parts[2], revision=parts[3])


def model_files(model_dir: str | Path) -> list[Path]:
    """The files the digest covers, sorted by relative path; IdentityError without weights."""
    root = Path(model_dir)
    if not root.is_dir():
        raise IdentityError(f"model folder not found: {root}")
    weights = sorted(p for p in root.rglob("*.safetensors") if p.is_file())
    if not weights:
        raise IdentityError(f"no *.safetensors weights in {root}")
    if not (root / "config.json").is_file():
        raise IdentityError(f"no config.json in {root}")
    meta = [root / name for name in METADATA_FILES if (root / name).is_file()]
    return sorted([*weights, *meta], key=lambda p: p.relative_to(root).as_posix())


def model_digest(model_dir: str | Path) -> str:
    """sha256 over (relative path, size, bytes) of each covered file, in sorted order."""
    root = Path(model_dir)
    h = hashlib.sha256(b"distill-subnet model digest v1\n")
    for path in model_files(root):
        rel = path.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(4, "big") + rel + path.stat().st_size.to_bytes(8, "big"))
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
        except OSError as e:
            raise IdentityError(f"cannot read {path}: {e.strerror}") from e
    return h.hexdigest()


def _token(text: str, limit: int) -> str:
    """Squash free text (a folder name) into the identity's allowed characters."""
    cleaned = re.sub(r"[^A-Za-z0-9._/+-]+", "-", text).strip("-") or "model"
    return cleaned[-limit:].lstrip("-/") or "model"


def identity_for(
    model_dir: str | Path, name: str | None = None, revision: str = "local"
) -> ModelIdentity:
    """The identity of a model folder; ``name`` defaults to the folder name."""
    root = Path(model_dir)
    return ModelIdentity(
        digest=model_digest(root),
        name=_token(name or root.resolve().name, MAX_NAME),
        revision=_token(revision, MAX_REVISION),
    )
