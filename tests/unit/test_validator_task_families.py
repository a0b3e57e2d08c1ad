"""validator.task_families: the localnet narrows the prompts to the tiny world's families."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.tasks import FAMILIES, generate_tasks
from subnet.config import load_config
from subnet.errors import ConfigError


def test_default_is_every_family() -> None:
    assert load_config(env={}).validator.task_families == tuple(FAMILIES)


def test_comma_list_from_set_and_env_restricts_the_tasks() -> None:
    cfg = load_config(
        env={"SUBNET_VALIDATOR__TASK_FAMILIES": "copy"},
        overrides={"validator.task_families": "add, sort,reverse"},
    )
    families = cfg.validator.task_families
    assert families == ("add", "sort", "reverse")
    assert {t.family for t in generate_tasks("step-7", 60, families)} == set(families)


@pytest.mark.parametrize("bad", ["", " , "])
def test_empty_families_fail_at_load(bad: str) -> None:
    with pytest.raises(ConfigError, match="task_families"):
        load_config(env={}, overrides={"validator.task_families": bad})


def test_unknown_families_stop_the_validator_before_it_loads_anything() -> None:
    from neurons.validator.main import check_config

    cfg = load_config(
        env={},
        overrides={"validator.task_families": "add,bogus", "validator.teacher": "/t"},
    )
    with pytest.raises(ConfigError, match=r"validator.task_families: .*'bogus'"):
        check_config(cfg)
    check_config(load_config(env={}, overrides={"validator.teacher": "/t"}))


def test_localnet_validator_asks_the_worlds_families(tmp_path: Path) -> None:
    from neurons.localnet.plan import Options, validator_spec

    manifest = {
        "network": "devnet:x.sqlite",
        "netuid": 1,
        "hotkey": "default",
        "wallet_path": str(tmp_path),
        "validators": ["v0"],
    }
    models = {"teacher": tmp_path / "teacher"}
    argv = list(
        validator_spec(Options(), tmp_path, manifest, models, ("add", "sort", "reverse")).argv
    )
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    key, _, value = next(s for s in sets if s.startswith("validator.task_families=")).partition("=")
    assert load_config(env={}, overrides={key: value}).validator.task_families == (
        "add",
        "sort",
        "reverse",
    )
    plain = validator_spec(Options(), tmp_path, manifest, models).argv
    assert not any("task_families" in a for a in plain)


def test_localnet_validator_asks_the_real_worlds_chat_dataset(tmp_path: Path) -> None:
    """``--world real``: the validators' prompts are the world's ``prompts.jsonl`` (a prompt
    source), not a synthetic family; the selective adversary is told the same."""
    from neurons.localnet.plan import MinerPlan, Options, miner_spec, validator_spec

    manifest = {
        "network": "devnet:x.sqlite",
        "netuid": 1,
        "hotkey": "default",
        "wallet_path": str(tmp_path),
        "validators": ["v0"],
    }
    models = {"teacher": tmp_path / "teacher", "adversary-selective": tmp_path / "a"}
    data = str(tmp_path / "real" / "prompts.jsonl")
    for argv in (
        validator_spec(Options(), tmp_path, manifest, models, prompt_sources=(data,)).argv,
        miner_spec(
            Options(),
            tmp_path,
            manifest,
            models,
            MinerPlan("m", "adversary-selective", "hf", 1, "5E", 9000),
            (),
            (data,),
        ).argv,
    ):
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        assert not any(s.startswith("validator.task_families=") for s in sets)
        key, _, value = next(
            s for s in sets if s.startswith("validator.prompt_sources=")
        ).partition("=")
        assert load_config(env={}, overrides={key: value}).validator.prompt_sources == (data,)
