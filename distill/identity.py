"""Model identity: a digest of the files that decide a model's outputs, and its chain payload.

A miner commits its identity on chain (Commitments pallet, plaintext ``Raw`` fields of at most
128 bytes, at most 3 of them: :data:`MAX_V2_BYTES`); a validator that loads the committed files
recomputes the digest and compares. Two payload versions are read:

* ``v1:<digest>:<name>:<revision>`` (one field, <= 128 bytes): where the files are is not said;
  validators look under their local model roots and ask the miner itself.
* ``v2:<digest>:<tokenizer digest>:<name>:<source>`` (up to three fields, <= 306 bytes with the
  longest source): ``source`` is ``miner`` (the miner serves its committed files, content
  addressed, to validators) or ``hf:<repo id>@<40-hex commit>`` (a Hugging Face repo at a
  pinned revision); the tokenizer digest lets a validator refuse a student whose tokenizer is
  not the teacher's before fetching anything (see :mod:`distill.manifest`).

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
VERSION_2 = "v2"
MAX_PAYLOAD_BYTES = 128  # one Raw field: a v1 payload
MAX_V2_BYTES = 384  # three Raw fields (the Commitments pallet's limit on this chain)
MAX_NAME = 32
MAX_REVISION = 16
MAX_REPO = 96  # the Hugging Face Hub's limit on "namespace/name"
DIGEST_DOMAIN = b"distill-subnet model digest v1\n"
_TOKEN = re.compile(r"^[A-Za-z0-9._/+-]+$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
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
class ModelSource:
    """Where a validator fetches the committed files: the miner itself, or a pinned HF repo."""

    kind: str  # "miner" | "hf"
    repo: str = ""  # hf: "namespace/name"
    revision: str = ""  # hf: the 40-hex commit the files are pinned to

    def __post_init__(self) -> None:
        if self.kind == "miner":
            if self.repo or self.revision:
                raise IdentityError("a miner source names no repo or revision")
            return
        if self.kind != "hf":
            raise IdentityError(
                f"model source must be miner or hf:<repo>@<commit>, got {self.kind}"
            )
        if not (len(self.repo) <= MAX_REPO and _REPO.match(self.repo)):
            raise IdentityError(
                f"hf repo must be namespace/name of <= {MAX_REPO} characters, got {self.repo!r}"
            )
        if not _COMMIT.match(self.revision):
            raise IdentityError(
                f"hf revision must be a pinned 40-hex commit, got {self.revision!r}"
            )

    def format(self) -> str:
        return "miner" if self.kind == "miner" else f"hf:{self.repo}@{self.revision}"

    @classmethod
    def parse(cls, text: str) -> ModelSource:
        if text == "miner":
            return cls("miner")
        kind, _, rest = text.partition(":")
        repo, _, revision = rest.rpartition("@")
        if kind != "hf" or not repo:
            raise IdentityError(f"model source must be miner or hf:<repo>@<commit>, got {text!r}")
        return cls("hf", repo, revision)


MINER_SOURCE = ModelSource("miner")


@dataclass(frozen=True)
class ModelIdentity:
    """A committed model: v1 (``tokenizer_digest`` and ``source`` None) or v2 (both set)."""

    digest: str  # sha256 hex of the model files
    name: str
    revision: str
    tokenizer_digest: str | None = None  # v2: sha256 hex of the tokenizer files
    source: ModelSource | None = None  # v2: where the files can be fetched

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
        if (self.tokenizer_digest is None) != (self.source is None):
            raise IdentityError("a v2 identity names both a tokenizer digest and a source")
        if self.tokenizer_digest is not None and not _DIGEST.match(self.tokenizer_digest):
            raise IdentityError("tokenizer digest must be 64 lowercase hex characters")

    @property
    def version(self) -> str:
        return VERSION if self.source is None else VERSION_2

    def format(self) -> str:
        return format_identity(self)

    def with_source(self, source: ModelSource, tokenizer_digest: str) -> ModelIdentity:
        """The v2 identity of the same model, fetchable from ``source``."""
        return ModelIdentity(self.digest, self.name, self.revision, tokenizer_digest, source)


def format_identity(identity: ModelIdentity) -> str:
    if identity.source is None:
        payload = f"{VERSION}:{identity.digest}:{identity.name}:{identity.revision}"
        assert len(payload.encode()) <= MAX_PAYLOAD_BYTES  # guaranteed by the field limits
        return payload
    payload = (
        f"{VERSION_2}:{identity.digest}:{identity.tokenizer_digest}:{identity.name}:"
        f"{identity.source.format()}"
    )
    assert len(payload.encode()) <= MAX_V2_BYTES  # guaranteed by the field limits
    return payload


def parse_identity(payload: str) -> ModelIdentity:
    """``v1:<digest>:<name>:<revision>`` or ``v2:<digest>:<tokenizer>:<name>:<source>`` ->
    ModelIdentity; IdentityError (one line) if malformed."""
    if not isinstance(payload, str) or len(payload.encode()) > MAX_V2_BYTES:
        raise IdentityError(f"identity payload must be a string of <= {MAX_V2_BYTES} bytes")
    if payload.startswith(VERSION_2 + ":"):
        parts = payload.split(":", 4)
        if len(parts) != 5:
            raise IdentityError(
                f"identity payload must look like {VERSION_2}:<digest>:<tokenizer>:<name>:<source>"
            )
        source = ModelSource.parse(parts[4])
        rev = source.revision[:MAX_REVISION] if source.kind == "hf" else "local"
        return ModelIdentity(parts[1], parts[3], rev, parts[2], source)
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise IdentityError(f"a v1 identity payload is <= {MAX_PAYLOAD_BYTES} bytes")
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
    h = hashlib.sha256(DIGEST_DOMAIN)
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
    model_dir: str | Path,
    name: str | None = None,
    revision: str = "local",
    *,
    digest: str | None = None,
) -> ModelIdentity:
    """The (v1) identity of a model folder; ``name`` defaults to the folder name. ``digest``:
    already computed (:func:`distill.manifest.committed_identity` reads the files once)."""
    root = Path(model_dir)
    return ModelIdentity(
        digest=digest or model_digest(root),
        name=_token(name or root.resolve().name, MAX_NAME),
        revision=_token(revision, MAX_REVISION),
    )
