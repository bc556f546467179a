"""Each training option is declared once: the CLI, the pipeline YAML and Python read the same defaults."""
from __future__ import annotations

import pytest

from langgraft.adapt.pipeline import config as pipeline_config
from langgraft.adapt.cli import build_parser
from langgraft.adapt.pretrain.head import HeadRecoveryOptions
from langgraft.adapt.pretrain.language_modules import language_module_options
from langgraft.adapt.pretrain.run import PretrainOptions
from langgraft.adapters.cli import kind_config
from langgraft.adapters.madx import MadxConfig
from langgraft.adapters.sft import SftConfig
from langgraft.adapters.training import TrainOptions
from langgraft.options import defaults, from_mapping

REQUIRED = {
    "pretrain": (["pretrain", "--model", "m", "--corpus", "c.txt", "--out", "o"], PretrainOptions),
    "module train-task": (["module", "train-task", "--kind", "lora", "--model", "m", "--out", "o", "--train", "t.tsv",
                           "--task", "seq-cls"], TrainOptions),
    "module train-language": (["module", "train-language", "--kind", "lora", "--model", "m", "--out", "o",
                               "--corpus", "c.txt", "--language", "xx"], TrainOptions),
    "head recover": (["head", "recover", "--model", "m", "--corpus", "c.txt", "--out", "o"], HeadRecoveryOptions),
}


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_cli_defaults_are_the_dataclass_defaults(command):
    argv, options = REQUIRED[command]
    args = build_parser().parse_args(argv)
    expected = defaults(options)
    assert expected  # the comparison below covers every option with a default
    for name, value in expected.items():
        assert getattr(args, name) == value, name


@pytest.mark.parametrize("section,options,stage_set,own", [
    (pipeline_config.PretrainConfig, PretrainOptions, pipeline_config.STAGE_SET_FIELDS, pipeline_config.PRETRAIN_DEFAULTS),
    (pipeline_config.HeadConfig, HeadRecoveryOptions, ("seed",), {}),
    (pipeline_config.ModuleConfig, TrainOptions, ("seed",), {}),
], ids=["pretrain", "head", "modules"])
def test_yaml_sections_are_generated_from_the_options(section, options, stage_set, own):
    """A YAML section holds every option but those the stage sets, with the option's default (or the section's own)."""
    yaml_defaults = defaults(section)
    for name, value in defaults(options).items():
        if name in stage_set:
            assert name not in yaml_defaults
        else:
            assert yaml_defaults[name] == own.get(name, value), name
    assert set(own) <= set(yaml_defaults)


def test_former_yaml_key_batch_size_still_reads():
    module = from_mapping(pipeline_config.ModuleConfig, {"name": "m", "batch_size": 4}, "modules[0]")
    head = from_mapping(pipeline_config.HeadConfig, {"batch_size": 8}, "head")
    assert (module.per_device_train_batch_size, head.per_device_train_batch_size) == (4, 8)


def test_module_kind_options_come_from_the_kinds_config_dataclasses():
    parser = build_parser()
    args = parser.parse_args([*REQUIRED["module train-task"][0][:2], "--kind", "sft", "--model", "m", "--out", "o",
                              "--train", "t.tsv", "--task", "seq-cls", "--k", "50", "--l1", "0.5",
                              "--include-layernorm"])
    assert kind_config("sft", args) == {"k": 50, "l1_weight": 0.5, "include_layernorm": True}
    madx = parser.parse_args([*REQUIRED["module train-task"][0], "--no-invertible", "--reduction-factor", "4"])
    assert kind_config("madx", madx) == {"invertible": False, "reduction_factor": 4}
    options = language_module_options("madx", ["language=ny", "no-invertible", "reduction-factor=4"])
    assert options["config"] == MadxConfig(invertible=False, reduction_factor=4) and options["language"] == "ny"
    assert language_module_options("sft", ["language=ny", "l1=0.5", "k=9"])["config"] == SftConfig(k=9, l1_weight=0.5)
