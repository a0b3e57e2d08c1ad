"""validator.task_families: the localnet narrows the prompts to the tiny world's families."""

from __future__ import annotations

import pytest

from distill.tasks import FAMILIES, generate_tasks
from subnet.config import load_config
from subnet.errors import ConfigError


def test_default_is_every_family() -> None:
    assert load_config(env={}).validator.task_families == tuple(FAMILIES)


def test_comma_list_from_set_and_env_restricts_the_tasks() -> None:
    cfg = load_config(env={"SUBNET_VALIDATOR__TASK_FAMILIES": "copy"},
                      overrides={"validator.task_families": "add, sort,reverse"})
    families = cfg.validator.task_families
    assert families == ("add", "sort", "reverse")
    assert {t.family for t in generate_tasks("step-7", 60, families)} == set(families)


@pytest.mark.parametrize("bad", ["add,bogus", "", " , "])
def test_unknown_or_empty_families_fail_at_load(bad: str) -> None:
    with pytest.raises(ConfigError, match="task_families"):
        load_config(env={}, overrides={"validator.task_families": bad})
