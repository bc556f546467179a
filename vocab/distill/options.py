"""What one distillation run does: :class:`DistillOptions` (one declaration per option; CLI and YAML derive from it).

The training side (steps, learning rate, precision, device) is :class:`langgraft.training.TrainingOptions`,
given next to it. Importing this module does not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from langgraft.errors import UserError
from langgraft.options import Validated, option

TeacherText = Literal["same", "parallel"]
Trainable = Literal["new-rows", "embeddings"]
NtpScaling = Literal["alpha", "fixed"]
Pooling = Literal["mean", "first"]
DISTILL_LEARNING_RATE = 1e-4  # Token Distillation's AdamW rate; --learning-rate overrides it
# The distillation run's own training defaults (the rest are TrainingOptions'): Token Distillation's
# AdamW without weight decay (decay would move rows that get no gradient), batch 16.
TRAINING_DEFAULTS = {"learning_rate": DISTILL_LEARNING_RATE, "weight_decay": 0.0, "per_device_train_batch_size": 16,
                     "max_steps": 300, "save_steps": 100}
LOSS = "distillation loss"
DATA = "distillation data"


@dataclass(kw_only=True)
class DistillOptions(Validated):
    """Which teacher, which loss, which data (see docs/distillation.md)."""

    teacher_text: TeacherText = option(
        "same", help="same: the teacher reads the same target text under its own tokenizer (a language the source "
        "knows); parallel: the teacher reads the source side of parallel text, the student its translation (a "
        "language the source does not know)", group=LOSS)
    layers: list[int] = option(default_factory=lambda: [-1], help="hidden states matched: indices into the model's "
                               "hidden_states (0: embedding output, -1: last layer)", group=LOSS)
    hidden_weight: float = option(1.0, help="weight of the hidden-state MSE", ge=0, group=LOSS)
    logit_kl_weight: float = option(0.0, help="same text: weight of KL(teacher || student) of the next-token (CLM) or "
                                    "token (MLM) distribution over the vocabulary both tokenizers share, at aligned "
                                    "positions (runs the teacher at every step instead of caching it)", ge=0,
                                    group=LOSS)
    ntp_weight: float = option(0.0, help="same text, causal LMs: weight of the student's own next-token loss on the "
                               "snippets (Token Distillation's alpha-NTP mix)", ge=0, group=LOSS)
    ntp_scaling: NtpScaling = option("alpha", help="alpha: the next-token loss is rescaled to the distillation "
                                     "loss's size each step (alpha = MSE/CE, detached), then weighted; fixed: "
                                     "weighted as it is", group=LOSS)
    pooling: Pooling = option("mean", help="parallel text: sentence vector = mean over non-special tokens, or the "
                              "first token's state (CLS)", group=LOSS)
    source_side_weight: float = option(1.0, help="parallel text: weight of the student reading the source "
                                       "sentence too and matching the teacher (keeps the space from drifting; "
                                       "Reimers & Gurevych 2020)", ge=0, group=LOSS)
    word_weight: float = option(0.0, help="parallel text: weight of an MSE at word-aligned positions (eflomal "
                                "links; the teacher's state at the last piece of a source word, the student's at the "
                                "last piece of its aligned target word); needs eflomal, whose alignments are not "
                                "bit-reproducible", ge=0, group=LOSS)
    trainable: Trainable = option("new-rows", help="new-rows: only the rows the target tokenizer added (extend "
                                  "mode; in replace mode every non-special row); embeddings: every input-embedding "
                                  "row (and an untied head's) except special tokens", group=LOSS)
    snippets_per_token: int = option(25, help="same text: snippets mined from the corpus for each new token", ge=1,
                                     group=DATA)
    snippet_tokens: int = option(50, help="same text: length of a snippet in target tokens", ge=4, group=DATA)
    max_snippets: int = option(20_000, help="same text: at most this many snippets in all (bounds memory: the "
                               "teacher's states at every aligned position are cached)", ge=1, group=DATA)
    max_pairs: int = option(20_000, help="parallel text: at most this many sentence pairs (the first ones)", ge=1,
                            group=DATA)
    max_seq_length: int = option(128, help="tokens per sequence (teacher and student) at most, and never more than "
                                 "either model's positions; longer text is cut", ge=8, aliases=("--max-length",),
                                 keys=("max_length",), group=DATA)
    held_out: int = option(64, help="snippets (or pairs) kept out of training to measure the teacher-student "
                           "loss before and after (at most a tenth of them)", ge=0, group=DATA)
    max_unknown: float = option(0.2, help="refuse a teacher whose tokenizer maps more than this share of the "
                                "text to its unknown token (it cannot read the corpus)", ge=0, le=1, group=DATA)
    epochs: float | None = option(None, help="passes over the training snippets (or pairs); when given it sets "
                                  "the optimizer steps instead of --max-steps", gt=0, group=DATA)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layers:
            raise UserError("layers: give at least one hidden-state index, e.g. -1")
        if self.hidden_weight == 0 and self.logit_kl_weight == 0 and self.ntp_weight == 0:
            raise UserError("hidden_weight, logit_kl_weight and ntp_weight are all 0: nothing to learn from")
        if self.word_weight and self.teacher_text != "parallel":
            raise UserError("word_weight applies to teacher_text parallel (word alignments of parallel text)")
        if self.teacher_text == "parallel" and self.hidden_weight == 0:
            raise UserError("hidden_weight: the parallel teacher matches pooled hidden states; give it a weight > 0")
