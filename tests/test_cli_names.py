"""`langgraft module train-*` take the TrainingArguments option names; the old spellings still parse."""
from __future__ import annotations

import pytest

from langgraft.adapt.cli import build_parser

COMMON = ["--kind", "lora", "--model", "m", "--out", "o"]
COMMANDS = {
    "train-language": ["module", "train-language", *COMMON, "--corpus", "c.txt", "--language", "xx"],
    "train-task": ["module", "train-task", *COMMON, "--train", "t.tsv", "--task", "seq-cls"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_old_and_new_names_parse_to_the_same_options(command):
    parser = build_parser()
    new = parser.parse_args(COMMANDS[command] + ["--max-steps", "7", "--learning-rate", "3e-4",
                                                 "--per-device-train-batch-size", "5"])
    old = parser.parse_args(COMMANDS[command] + ["--steps", "7", "--lr", "3e-4", "--batch-size", "5"])
    assert vars(new) == vars(old)
    assert (new.max_steps, new.learning_rate, new.per_device_train_batch_size) == (7, 3e-4, 5)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_defaults_without_either_spelling(command):
    args = build_parser().parse_args(COMMANDS[command])
    assert (args.max_steps, args.learning_rate, args.per_device_train_batch_size) == (200, None, 16)
    assert not hasattr(args, "steps") and not hasattr(args, "lr") and not hasattr(args, "batch_size")


def test_help_documents_only_the_new_names(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["module", "train-language", "--help"])
    text = capsys.readouterr().out
    assert "--max-steps" in text and "--learning-rate" in text and "--per-device-train-batch-size" in text
    assert "--steps" not in text and "--lr " not in text and "--batch-size" not in text
