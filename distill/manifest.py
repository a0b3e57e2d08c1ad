"""The files a committed model consists of: one pass over them gives the model digest, the
tokenizer digest and a per-file manifest (path, size, sha256) a miner serves by content.

The model digest is :func:`distill.identity.model_digest` (unchanged since v1); the manifest
lets a validator fetch each file by its own sha256, check it on arrival, resume a broken
transfer, and then check the assembled folder against the committed digest, the only thing it
trusts. The tokenizer digest covers the files that decide how text maps to token ids
(:data:`TOKENIZER_FILES`, a subset of what the model digest covers): a student whose tokenizer
differs from the teacher's cannot be scored against it. ``tokenizer_config.json`` is left out
on purpose: it carries a chat template, a maximum length and padding defaults, none of which
change an id, and students often differ there.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.identity import (
    DIGEST_DOMAIN,
    IdentityError,
    ModelIdentity,
    ModelSource,
    identity_for,
    model_files,
)

TOKENIZER_DOMAIN = b"distill-subnet tokenizer digest v1\n"
TOKENIZER_FILES = (
    "tokenizer.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
MANIFEST_VERSION = 1
MAX_MANIFEST_FILES = 4096
MAX_MANIFEST_BYTES = 1 << 20
MAX_PATH = 255
_SHA = re.compile(r"^[0-9a-f]{64}$")
_PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One covered file: its path relative to the model folder, size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a model folder holds, as the miner serves it and a validator checks it."""

    digest: str
    tokenizer_digest: str
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def by_sha(self, sha256: str) -> FileEntry | None:
        return next((f for f in self.files if f.sha256 == sha256), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "digest": self.digest,
            "tokenizer_digest": self.tokenizer_digest,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }


def _frame(rel: str, size: int) -> bytes:
    raw = rel.encode()
    return len(raw).to_bytes(4, "big") + raw + size.to_bytes(8, "big")


def covered_path(path: str) -> bool:
    """Whether ``path`` (relative, posix) is one the model digest covers (see model_files)."""
    from distill.identity import METADATA_FILES

    return path.endswith(".safetensors") or path in METADATA_FILES


def model_manifest(model_dir: str | Path) -> Manifest:
    """Read every covered file once: model digest, tokenizer digest and per-file sha256.

    IdentityError without weights or config (as :func:`model_digest`) or without any
    tokenizer file (nothing to compare with the teacher's).
    """
    root = Path(model_dir)
    model = hashlib.sha256(DIGEST_DOMAIN)
    tok = hashlib.sha256(TOKENIZER_DOMAIN)
    entries = []
    tokenizer_seen = False
    for path in model_files(root):
        rel = path.relative_to(root).as_posix()
        size = path.stat().st_size
        frame = _frame(rel, size)
        model.update(frame)
        is_tok = rel in TOKENIZER_FILES
        if is_tok:
            tok.update(frame)
            tokenizer_seen = True
        own = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    model.update(chunk)
                    own.update(chunk)
                    if is_tok:
                        tok.update(chunk)
        except OSError as e:
            raise IdentityError(f"cannot read {path}: {e.strerror}") from e
        entries.append(FileEntry(rel, size, own.hexdigest()))
    if not tokenizer_seen:
        raise IdentityError(f"no tokenizer file in {root} (one of {', '.join(TOKENIZER_FILES)})")
    return Manifest(model.hexdigest(), tok.hexdigest(), tuple(entries))


def tokenizer_digest(model_dir: str | Path) -> str:
    """The tokenizer digest of a model folder (the teacher's, to compare with committed ones)."""
    root = Path(model_dir)
    h = hashlib.sha256(TOKENIZER_DOMAIN)
    found = False
    for rel in sorted(  # model_files' order: sorted relative paths
        n for n in TOKENIZER_FILES if (root / n).is_file()
    ):
        found = True
        data = (root / rel).read_bytes()
        h.update(_frame(rel, len(data)) + data)
    if not found:
        raise IdentityError(f"no tokenizer file in {root} (one of {', '.join(TOKENIZER_FILES)})")
    return h.hexdigest()


def parse_manifest(data: bytes, *, max_total_bytes: int | None = None) -> Manifest:
    """A manifest from untrusted bytes; IdentityError (one line) for anything malformed.

    Paths must be relative, plain and covered by the model digest (a hostile manifest cannot
    make the validator write anywhere else); at most :data:`MAX_MANIFEST_FILES` files and, when
    given, ``max_total_bytes`` in all.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise IdentityError(f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise IdentityError(f"manifest is not JSON: {str(e)[:80]}") from None
    if not isinstance(obj, dict) or obj.get("version") != MANIFEST_VERSION:
        raise IdentityError(f"manifest must be an object with version {MANIFEST_VERSION}")
    digest, tok, files = obj.get("digest"), obj.get("tokenizer_digest"), obj.get("files")
    if not (isinstance(digest, str) and _SHA.match(digest)):
        raise IdentityError("manifest digest must be 64 lowercase hex characters")
    if not (isinstance(tok, str) and _SHA.match(tok)):
        raise IdentityError("manifest tokenizer_digest must be 64 lowercase hex characters")
    if not isinstance(files, list) or not 0 < len(files) <= MAX_MANIFEST_FILES:
        raise IdentityError(f"manifest files must be a list of 1..{MAX_MANIFEST_FILES} entries")
    entries = [_entry(f) for f in files]
    paths = [e.path for e in entries]
    if len(set(paths)) != len(paths):
        raise IdentityError("manifest lists a path twice")
    if "config.json" not in paths or not any(p.endswith(".safetensors") for p in paths):
        raise IdentityError("manifest needs config.json and at least one *.safetensors file")
    total = sum(e.size for e in entries)
    if max_total_bytes is not None and total > max_total_bytes:
        raise IdentityError(f"model is {total} bytes, more than the {max_total_bytes} allowed")
    return Manifest(digest, tok, tuple(sorted(entries, key=lambda e: e.path)))


def _entry(raw: Any) -> FileEntry:
    if not isinstance(raw, dict):
        raise IdentityError("manifest file entries must be objects")
    path, size, sha = raw.get("path"), raw.get("size"), raw.get("sha256")
    if not (isinstance(path, str) and len(path) <= MAX_PATH and _PATH.match(path)):
        raise IdentityError(f"manifest path {str(path)[:80]!r} is not a plain relative path")
    if any(part in (".", "..") for part in path.split("/")):
        raise IdentityError(f"manifest path {path!r} is not a plain relative path")
    if not covered_path(path):
        raise IdentityError(f"manifest path {path!r} is not a file the model digest covers")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 1 << 50:
        raise IdentityError(f"manifest size of {path!r} must be a non-negative integer")
    if not (isinstance(sha, str) and _SHA.match(sha)):
        raise IdentityError(f"manifest sha256 of {path!r} must be 64 lowercase hex characters")
    return FileEntry(path, size, sha)


def covered_files(paths: Iterable[str]) -> list[str]:
    """The subset of ``paths`` the model digest covers (for filtering a hub listing)."""
    return sorted(p for p in paths if covered_path(p))


def committed_identity(
    model_dir: str | Path, source: ModelSource, name: str | None = None, revision: str = "local"
) -> tuple[ModelIdentity, Manifest]:
    """The v2 identity a miner commits for ``model_dir`` and the manifest it serves (one read
    of the files for both)."""
    manifest = model_manifest(model_dir)
    base = identity_for(model_dir, name, revision, digest=manifest.digest)
    return base.with_source(source, manifest.tokenizer_digest), manifest
