"""The module-kind registry: every built-in kind declares combine, the default refuses in one
line, and a name registered twice is an error."""
from __future__ import annotations

from pathlib import Path

import pytest

from langgraft.errors import UserError


def test_kinds_declare_combine_and_the_default_refuses():
    from langgraft.adapters import MODULE_KINDS, ModuleKind

    assert all(kind.combine is not ModuleKind.combine for kind in MODULE_KINDS.values())

    class Plain(ModuleKind):
        name = "plain"
        train = save = apply = revert = None  # type: ignore[assignment]

    with pytest.raises(UserError, match="plain modules cannot be combined") as raised:
        Plain().combine(None, [], Path("unused"))
    assert "\n" not in str(raised.value)


def test_a_kind_name_registered_twice_is_refused():
    from langgraft.adapters import MODULE_KINDS, register_kind
    from langgraft.adapters.lora import LoraKind

    before = dict(MODULE_KINDS)

    class AnotherLora(LoraKind):
        """A second kind under a taken name."""

    with pytest.raises(ValueError, match="'lora' is registered twice"):
        register_kind(AnotherLora)
    assert MODULE_KINDS == before
