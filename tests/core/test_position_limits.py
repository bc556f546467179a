"""The longest input a model takes: its position table, less RoBERTa's padding offset only where the model has one."""
from __future__ import annotations

import pytest
from transformers import GemmaConfig, GPT2Config, LlamaConfig, RobertaConfig, XLMRobertaConfig

from langgraft.models import default_max_length, position_limit

# (config without a pad token, the same with one, the longest sequence the position table holds)
SHAPES = {
    "gpt2": (GPT2Config(n_positions=128), GPT2Config(n_positions=128, pad_token_id=0), 128),
    "llama": (LlamaConfig(max_position_embeddings=4096, pad_token_id=None),
              LlamaConfig(max_position_embeddings=4096, pad_token_id=0), 4096),
    "gemma": (GemmaConfig(max_position_embeddings=8192, pad_token_id=None),
              GemmaConfig(max_position_embeddings=8192, pad_token_id=0), 8192),
}


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_models_without_a_position_offset_keep_every_position_with_or_without_a_pad_token(shape):
    without_pad, with_pad, positions = SHAPES[shape]
    assert without_pad.pad_token_id is None and with_pad.pad_token_id == 0
    assert position_limit(without_pad) == position_limit(with_pad) == positions
    assert default_max_length(with_pad, None, cap=1 << 20) == positions


@pytest.mark.parametrize("config_class", [RobertaConfig, XLMRobertaConfig])
def test_roberta_family_loses_padding_idx_plus_one_positions(config_class):
    # position ids start at padding_idx + 1 (transformers' create_position_ids_from_input_ids)
    assert position_limit(config_class(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(config_class(max_position_embeddings=130, pad_token_id=0)) == 129


def test_the_cap_and_the_tokenizer_limit_still_bound_the_length():
    class Tokenizer:
        model_max_length = 100

    assert default_max_length(GPT2Config(n_positions=1024), None) == 512
    assert default_max_length(GPT2Config(n_positions=1024), Tokenizer()) == 100
