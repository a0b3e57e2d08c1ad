"""Suite-wide isolation: tests never touch the real ``~/.bittensor`` and never reach a model hub.

``pytest_configure`` runs before any test module is imported (and so before the bittensor SDK
reads ``HOME``): it points ``HOME`` at a throwaway folder and switches the Hugging Face
libraries offline. The tiny world cache is shared on purpose: ``SUBNET_CACHE`` is pinned to the
real user cache (computed from the original ``HOME``) so the models built once are reused by
every run on this machine, CI included.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from distill.tiny import TinyWorld

ISOLATED_HOME = pytest.StashKey[Path]()

# Property tests draw the same examples on every run ("deterministic"), so a suite that passed
# on main passes on any clone; `HYPOTHESIS_PROFILE=explore` draws fresh examples
# to hunt for new counterexamples (replay one with the printed @reproduce_failure blob).
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", max_examples=500, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def pytest_configure(config: pytest.Config) -> None:
    real_home = Path(os.environ.get("HOME", str(Path.home())))
    if not os.environ.get("SUBNET_CACHE"):
        xdg = os.environ.get("XDG_CACHE_HOME") or str(real_home / ".cache")
        os.environ["SUBNET_CACHE"] = str(Path(xdg) / "distill-subnet")
    home = config.stash[ISOLATED_HOME] = Path(tempfile.mkdtemp(prefix="subnet-test-home-"))
    os.environ["HOME"] = str(home)
    os.environ.pop("XDG_CACHE_HOME", None)
    os.environ.pop("XDG_CONFIG_HOME", None)
    for var in ("BTCLI_TOKEN_SYMBOLS_CACHE", "BTCLI_CONFIG", "BTCLI_SUBNET_NAMES_CACHE"):
        os.environ[var] = str(home / ".bittensor" / var.lower())
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    # Wallet passwords never come from the developer's environment in tests.
    for var in ("BT_WALLET_PASSWORD", "BT_WALLET_PASSWORD_FILE", "SUBNET_CONFIG"):
        os.environ.pop(var, None)
    for var in [v for v in os.environ if v.startswith("SUBNET_") and "__" in v]:
        os.environ.pop(var)


def pytest_unconfigure(config: pytest.Config) -> None:
    if ISOLATED_HOME in config.stash:
        shutil.rmtree(config.stash[ISOLATED_HOME], ignore_errors=True)


@pytest.fixture
def real_home_untouched(pytestconfig: pytest.Config) -> Path:
    """The isolated HOME of this run (tests can assert nothing leaked elsewhere)."""
    return pytestconfig.stash[ISOLATED_HOME]


@pytest.fixture(scope="session")
def tiny() -> TinyWorld:
    """The tiny world (teacher, undistilled and distilled students), built once per session
    (minutes from a cold cache, instant from a warm one) before the first test that asks for
    it. A sync fixture: it never runs inside a test's event loop, so the build's own event
    loop (the distilled student's teacher targets) is never nested in another."""
    from distill.tiny import tiny_world

    return asyncio.run(tiny_world())


@pytest.fixture(scope="session")
def real() -> TinyWorld:
    """The real world (DeepSeek-V4 tokenizer, chat template, teacher and both students trained
    on the standard library's docstrings), built once per session like :func:`tiny` (minutes
    from a cold cache, instant from a warm one)."""
    from distill.real_world import real_world

    return asyncio.run(real_world())
