"""``distill_embeddings``: train the new embedding rows of an initialized model against the frozen source model.

The model is a ``langgraft init`` output (its ``transfer_summary.json`` says replace or extend mode
and which source it came from); the teacher is that source (or another model of the same width).
Steps: check every input, mine the data and align it, let the teacher read it once (cached
targets), measure the teacher-student loss on held-out items, train through the one training
path (:func:`langgraft.training.train`: resume, progress bar, precision, ``metrics.jsonl``),
measure again, and save a stock checkpoint. Layout of ``out``::

    out/config.json, model.safetensors, tokenizer*   the student with distilled rows (stock)
    out/distill_summary.json                         teacher, data, loss, options, held-out loss before/after
    out/transfer_summary.json, provenance.jsonl      the init's records, carried over (mode, new-row start)
    out/metrics.jsonl                                training log
    out/checkpoints/checkpoint-N                     while running (the resume points); removed at the end
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from langgraft.atomic import atomic_file, match_umask
from langgraft.digest import sha256_path
from langgraft.errors import UserError
from langgraft.models import (auto_class, default_max_length, head_kind, load_config, load_model, load_tokenizer,
                              resolve_model_path)
from langgraft.outputs import check_output, clear_output, disk_full
from langgraft.sidecars import read_sidecar
from langgraft.training import (MetricsCallback, MetricsLog, TrainingOptions, check_options, checkpoint_dtype,
                                checkpoint_step, has_accelerator, latest_checkpoint, load_dtype, save_trained, train,
                                world_size)
from langgraft.training.checkpoints import check_resumable, valid_checkpoints
from langgraft.vocab.resources.align import align_words
from langgraft.vocab.transfer import PROVENANCE_FILE, TRANSFER_SUMMARY_FILE

from .align import encode, require_offsets
from .data import (DistillCollator, DistillDataset, check_readable, layer_states, mine_snippets, pad_id, pool,
                   pool_mask, read_pairs, same_text_items, teacher_states, word_links)
from .loss import DistillLoss
from .options import DISTILL_LEARNING_RATE, TRAINING_DEFAULTS, DistillOptions

DISTILL_FILE = "distill_summary.json"
CHECKPOINTS = "checkpoints"
PHASE = "distill"
EVAL_BATCH = 16


def distill_training(**overrides: Any) -> TrainingOptions:
    """:class:`TrainingOptions` with the distillation defaults (:data:`TRAINING_DEFAULTS`), then ``overrides``."""
    return TrainingOptions(**{**TRAINING_DEFAULTS, **overrides})


@dataclass
class InitRecord:
    """What the init output says about itself: mode, first new row, the source it came from."""

    mode: str
    new_rows_start: int  # 0 in replace mode: every row is new
    source: str | None
    method: str | None


def read_init_record(model_path: str) -> InitRecord:
    """``transfer_summary.json`` of a ``langgraft init`` output (extension mode: the new rows start at the
    source's vocabulary size; replace mode: every row is new)."""
    summary_file = Path(model_path) / TRANSFER_SUMMARY_FILE
    if not summary_file.is_file():
        raise UserError(f"--model {model_path} has no {TRANSFER_SUMMARY_FILE}: distillation starts from the output of "
                        "`langgraft init` (which records the mode and the source); run `langgraft init` first")
    summary = read_sidecar(summary_file, "the transfer summary", "re-run `langgraft init` for this model",
                           {"mode": str, "source_vocab_size": int})
    start = summary["source_vocab_size"] if summary["mode"] == "extend" else 0
    return InitRecord(summary["mode"], start, summary.get("source"), summary.get("method"))


@dataclass
class DistillResult:
    out: Path
    summary: dict[str, Any]


class _Run:
    def __init__(self, model: str, teacher: str | None, options: DistillOptions, training: TrainingOptions,
                 corpus: Sequence[str], parallel: Sequence[str] | None, out: str, overwrite: bool, resume: bool,
                 trainable: Callable[[Any], None] | None, callbacks: Sequence[Any]):
        self.options, self.training = options, training
        self.model_path = resolve_model_path(model)
        if not Path(self.model_path).is_dir():
            raise UserError(f"--model {model}: not a folder; give the output folder of `langgraft init`")
        self.init = read_init_record(self.model_path)
        teacher = teacher or self.init.source
        if not teacher:
            raise UserError(f"{self.model_path}/{TRANSFER_SUMMARY_FILE} names no source model; give --teacher SOURCE")
        self.teacher_path = resolve_model_path(teacher)
        self.corpus, self.parallel = [str(c) for c in corpus], [str(p) for p in parallel or ()]
        self._check_data()
        if resume and overwrite:
            raise UserError("--resume continues the run in --out and --overwrite replaces it; choose one")
        check_options(training)
        if world_size() > 1:
            raise UserError("langgraft distill runs in one process (the new rows of one model train in minutes); "
                            "launch it without torchrun/accelerate, on one GPU or the CPU")
        self.out, self.resume, self.overwrite = Path(out), resume, overwrite
        self.user_trainable, self.callbacks = trainable, list(callbacks)
        self.device = torch.device("cuda" if has_accelerator() and not training.use_cpu and torch.cuda.is_available()
                                   else "cpu")
        self.identity = {"model": str(Path(self.model_path).resolve()), "teacher": self.teacher_path,
                         "corpus": [str(Path(c).resolve()) for c in self.corpus],
                         "parallel": [str(Path(p).resolve()) for p in self.parallel],
                         "options": dataclasses.asdict(options),
                         "data_order": {"seed": training.seed, "batch": training.per_device_train_batch_size,
                                        "accumulation": training.gradient_accumulation_steps}}
        resuming = resume and (self.out / DISTILL_FILE).is_file()
        check_output(self.out, inputs=[self.model_path, self.teacher_path, *self.corpus, *self.parallel],
                     overwrite=overwrite or resuming,
                     replace_hint="pass --resume to continue its run or --overwrite to replace it"
                     if (self.out / DISTILL_FILE).is_file() else "pass --overwrite to replace it")
        if resuming:
            saved = read_sidecar(self.out / DISTILL_FILE, "the distillation run record",
                                 "start a new run in another --out", {"identity": dict})
            if saved["identity"] != self.identity:
                changed = sorted(k for k in self.identity if saved["identity"].get(k) != self.identity[k])
                raise UserError(f"cannot resume {self.out}: {', '.join(changed)} differ from the run there; resume "
                                "with the same model, teacher, data and options, or choose another --out")
            self.finished = saved if saved.get("finished") else None
            sealed = valid_checkpoints(self.out / CHECKPOINTS)[0]
            if self.finished is None and sealed:  # refused before any model loads or anything is written
                check_resumable(sealed[-1])
        self.resuming = resuming

    def _check_data(self) -> None:
        o = self.options
        if o.teacher_text == "same":
            if not self.corpus:
                raise UserError("--teacher-text same needs target-language text: give --corpus FILE")
            if self.parallel:
                raise UserError("--parallel is for --teacher-text parallel; drop it or switch the teacher text")
        else:
            if len(self.parallel) != 2:
                raise UserError("--teacher-text parallel needs --parallel SOURCE_FILE TARGET_FILE")
            if o.logit_kl_weight or o.ntp_weight:
                raise UserError("logit_kl_weight and ntp_weight apply to --teacher-text same (the texts differ "
                                "in parallel text); set them to 0")
        for path in [*self.corpus, *self.parallel]:
            if not Path(path).is_file():
                raise UserError(f"{path}: file not found; check the path")

    # ---------------------------------------------------------------- data
    def prepare(self) -> None:
        o = self.options
        self.student_tok = load_tokenizer(self.model_path)
        self.teacher_tok = load_tokenizer(self.teacher_path)
        require_offsets(self.student_tok, "student", self.model_path)
        require_offsets(self.teacher_tok, "teacher", self.teacher_path)
        self.student_config = load_config(self.model_path)
        self.student_kind = head_kind(self.student_config)
        # --max-seq-length never exceeds either model's position table (a 64-position decoder with the default 128)
        self.max_seq_length = min(default_max_length(self.student_config, self.student_tok, cap=o.max_seq_length),
                              default_max_length(load_config(self.teacher_path), self.teacher_tok, cap=o.max_seq_length))
        if o.ntp_weight and self.student_kind != "clm":
            raise UserError("ntp_weight: the next-token loss needs a causal LM; this model is "
                            f"{self.student_kind or 'headless'} (set ntp_weight 0)")
        self.wanted = self._wanted_rows()
        self.data_summary: dict[str, Any] = {"tokens": int(self.wanted.sum()), "max_seq_length": self.max_seq_length}
        if o.teacher_text == "same":
            items = self._same_text_items()
        else:
            items = self._parallel_items()
        self.items = items  # in the order of the teacher's encodings
        groups = [item.get("pair", index) for index, item in enumerate(items)]  # a pair's two sides stay together
        count = len(set(groups))
        held = min(o.held_out, count // 10)
        step = count // held if held else 0
        held_groups = set(range(step - 1, step * held, step)) if held else set()
        # held out: what the run is for (the target side of a pair); neither side of a held-out pair trains
        self.held_out = [item for item, group in zip(items, groups) if group in held_groups
                         and item.get("side", "target") == "target"]
        self.train_items = [item for item, group in zip(items, groups) if group not in held_groups]
        if not self.train_items:
            raise UserError("no training items are left after holding out; give more text")
        self.data_summary.update(train_items=len(self.train_items), held_out_items=len(self.held_out))

    def _wanted_rows(self) -> np.ndarray:
        """The rows distillation is for: the new ones (extend) or every non-special one (replace)."""
        wanted = np.zeros(len(self.student_tok), dtype=bool)
        wanted[self.init.new_rows_start:] = True
        wanted[[i for i in self.student_tok.all_special_ids if i < len(wanted)]] = False
        return wanted

    def _same_text_items(self) -> list[dict[str, Any]]:
        o = self.options
        snippets = mine_snippets(self.student_tok, self.corpus, self.wanted, o.snippets_per_token, o.snippet_tokens,
                                 o.max_snippets)
        if not snippets.texts:
            raise UserError(f"no snippet of {', '.join(self.corpus)} holds a token to distill (the corpus never "
                            "uses the new tokens); give target-language text that the new tokenizer's pieces come from")
        teacher_encoded, items = same_text_items(self.teacher_tok, self.student_tok, snippets.texts, self.max_seq_length)
        check_readable(teacher_encoded, o.max_unknown, ", ".join(self.corpus))
        if not items:
            raise UserError(f"no alignable text in {', '.join(self.corpus)}: the teacher's and the student's "
                            "tokenizations never end a token at the same character")
        served = snippets.counts[self.wanted] > 0
        missing = np.flatnonzero(self.wanted)[~served]
        self.data_summary.update(
            snippets=len(snippets.texts), items=len(items), aligned_positions=sum(len(i["positions"]) for i in items),
            tokens_with_snippets=int(served.sum()), tokens_without_snippets=int(len(missing)),
            examples_without_snippets=self.student_tok.convert_ids_to_tokens(missing[:20].tolist()))
        self.teacher_encoded = teacher_encoded
        return items

    def _parallel_items(self) -> list[dict[str, Any]]:
        o = self.options
        pairs = read_pairs(*self.parallel, o.max_pairs)
        teacher_encoded = encode(self.teacher_tok, pairs.source, self.max_seq_length)
        check_readable(teacher_encoded, o.max_unknown, self.parallel[0])
        sides = [("target", pairs.target, 1.0)] + ([("source", pairs.source, o.source_side_weight)]
                                                     if o.source_side_weight > 0 else [])
        items = []
        encoded = {side: encode(self.student_tok, texts, self.max_seq_length) for side, texts, _ in sides}
        links = self._word_links(pairs, teacher_encoded, encoded["target"]) if o.word_weight else None
        self.word_teacher_positions = [teacher for teacher, _ in links] if links else None
        for index in range(len(pairs.source)):
            for side, _, weight in sides:
                student = encoded[side][index]
                items.append({"input_ids": student.input_ids, "pool_mask": pool_mask(student, len(student.input_ids)),
                              "weight": weight, "pair": index, "side": side})
                if links and side == "target" and links[index][1]:
                    items[-1]["word_positions"] = links[index][1]
        self.data_summary.update(pairs=len(pairs.source), items=len(items))
        if links is not None:
            self.data_summary["word_links"] = sum(len(student) for _, student in links)
        self.teacher_encoded = teacher_encoded
        return items

    def _word_links(self, pairs: Any, teacher: list[Any], student: list[Any]) -> list[tuple[list[int], list[int]]]:
        """Word alignment of the pairs (eflomal) as token positions on both sides."""
        alignment = align_words(pairs.source, pairs.target)
        if len(alignment.links) != len(pairs.source):
            raise UserError("word_weight: some parallel lines have no word on one side; remove them or set "
                            "word_weight 0")
        return word_links(alignment, teacher, student)

    # ---------------------------------------------------------------- teacher
    def teach(self) -> None:
        """The teacher reads every item once; its states become the items' targets."""
        o = self.options
        config = load_config(self.teacher_path)
        kind = head_kind(config)
        if o.logit_kl_weight and kind is None:
            raise UserError(f"logit_kl_weight: the teacher {self.teacher_path} has no LM head; set it to 0 or give a "
                            "teacher with a head")
        teacher = load_model(self.teacher_path, auto_class(kind), dtype=load_dtype(self.training, config))
        teacher.eval().to(self.device)
        pad = pad_id(self.teacher_tok)
        cache_dtype = torch.bfloat16 if self.training.bf16 else torch.float32  # targets in memory: half the size
        if o.teacher_text == "same":
            positions = [item["teacher_positions"] for item in self.items]
            states, _ = teacher_states(teacher, self.teacher_encoded, positions, o.layers, pad, device=self.device,
                                       dtype=cache_dtype)
            for item, target in zip(self.items, states):
                item["targets"] = target
        else:
            words, states = teacher_states(teacher, self.teacher_encoded, self.word_teacher_positions, o.layers, pad,
                                           o.pooling, self.device, cache_dtype)
            for item in self.items:
                item["targets"] = states[item["pair"]]
                if "word_positions" in item:
                    item["word_targets"] = words[item["pair"]]
        self.teacher = teacher if o.logit_kl_weight else None
        self.teacher_width = states[0].shape[-1]
        del self.teacher_encoded

    # ---------------------------------------------------------------- student
    def _trainable(self, model: Any) -> tuple[Callable[[Any], None], int | None]:
        """(requires_grad setter, first new row for NewRows or None)."""
        extend_new_rows = self.init.mode == "extend" and self.options.trainable == "new-rows"
        if extend_new_rows:
            def freeze(m: Any) -> None:
                m.requires_grad_(False)
                if self.user_trainable is not None:
                    self.user_trainable(m)
            return freeze, self.init.new_rows_start
        frozen = torch.tensor(sorted({*self.student_tok.all_special_ids,
                                      *range(len(self.student_tok), model.get_input_embeddings().weight.shape[0])}),
                              dtype=torch.long)

        def embeddings(m: Any) -> None:
            m.requires_grad_(False)
            output = m.get_output_embeddings()
            tensors = [m.get_input_embeddings().weight]
            if output is not None:
                tensors += [t for t in (output.weight, getattr(output, "bias", None)) if t is not None]
            for tensor in {id(t): t for t in tensors}.values():
                tensor.requires_grad_(True)
                keep = frozen[frozen < tensor.shape[0]]
                tensor.register_hook(lambda grad, keep=keep: grad.index_fill(0, keep.to(grad.device), 0))
            if self.user_trainable is not None:
                self.user_trainable(m)
        return embeddings, None

    def loss(self) -> DistillLoss:
        o = self.options
        shared = self._shared_vocabulary() if o.logit_kl_weight else None
        return DistillLoss(o.layers, hidden_weight=o.hidden_weight, pooling=o.pooling, ntp_weight=o.ntp_weight,
                           ntp_scaling=o.ntp_scaling, logit_kl_weight=o.logit_kl_weight, teacher=self.teacher,
                           shared=shared, word_weight=o.word_weight, vocabulary=len(self.student_tok))

    def _shared_vocabulary(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(student ids, teacher ids) of the non-special tokens both vocabularies spell the same way."""
        teacher_vocab = self.teacher_tok.get_vocab()
        specials = set(self.teacher_tok.all_special_tokens) | set(self.student_tok.all_special_tokens)
        pairs = sorted((s, teacher_vocab[t]) for t, s in self.student_tok.get_vocab().items()
                       if t in teacher_vocab and t not in specials)
        if not pairs:
            raise UserError("logit_kl_weight: the teacher's and the student's vocabularies share no token; set it to 0")
        return torch.tensor([s for s, _ in pairs]), torch.tensor([t for _, t in pairs])

    @torch.no_grad()
    def held_out_mse(self, model: Any) -> float | None:
        """Mean teacher-student MSE over the held-out items (positions or sentences), as the loss computes it."""
        if not self.held_out:
            return None
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        collator = self.collator()
        total, count = 0.0, 0
        for start in range(0, len(self.held_out), EVAL_BATCH):
            batch = collator(self.held_out[start:start + EVAL_BATCH])
            outputs = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                            output_hidden_states=True)
            states = layer_states(outputs.hidden_states, self.options.layers).float()
            targets = batch["distill_targets"].to(device).float()
            if "distill_pool_mask" in batch:
                pooled = pool(states, batch["distill_pool_mask"].to(device), self.options.pooling)
                weights = batch["distill_weights"].to(device)
                total += float((((pooled - targets[:, 0]) ** 2).mean(-1) * weights).sum())
                count += int((weights > 0).sum())
            else:
                labels = batch["labels"].to(device)
                valid = labels >= 0
                picked = states.gather(1, labels.clamp(min=0).unsqueeze(-1).expand(-1, -1, states.shape[-1]))
                total += float((((picked - targets) ** 2).mean(-1) * valid).sum())
                count += int(valid.sum())
        model.train(was_training)
        return total / max(count, 1)

    def collator(self) -> DistillCollator:
        return DistillCollator(pad_id(self.student_tok), pad_id(self.teacher_tok), self.options.logit_kl_weight > 0)

    # ---------------------------------------------------------------- run
    def run(self) -> DistillResult:
        if self.resuming and self.finished is not None:  # nothing left to do
            return DistillResult(self.out, self.finished)
        started = time.perf_counter()
        self.prepare()
        self.teach()
        model = load_model(self.model_path, auto_class(self.student_kind),
                           dtype=load_dtype(self.training, self.student_config))
        width = model.config.hidden_size * len(self.options.layers) if hasattr(model.config, "hidden_size") else None
        if width is not None and width != self.teacher_width:
            raise UserError(f"the teacher's hidden states ({self.teacher_width // len(self.options.layers)} wide) do "
                            f"not match the student's ({model.config.hidden_size}); the teacher must be the model "
                            "the student was initialized from (or one of the same width)")
        model.to(self.device)
        before = self.held_out_mse(model)
        # first write into out: everything above has been checked
        if self.overwrite and not self.resuming:
            clear_output(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_record({"identity": self.identity, "finished": False})
        log = MetricsLog(self.out, enabled=True)
        done = None
        if self.resuming:
            checkpoint = latest_checkpoint(self.out / CHECKPOINTS, remove_broken=True)
            done = checkpoint_step(checkpoint) if checkpoint is not None else None
        log.truncate_after(done if done is not None else -1)
        if done is None and before is not None:
            log.write({"step": 0, "phase": PHASE, "held_out_mse": before})
        training = self._training_options()
        trainable, new_rows_from = self._trainable(model)
        result = train(model, DistillDataset(self.train_items), self.collator(), training, self.out / CHECKPOINTS,
                       loss=self.loss(), trainable=trainable, new_rows_from=new_rows_from,
                       callbacks=[MetricsCallback(log, PHASE, 0), *self.callbacks], resume=self.resume,
                       processing_class=self.student_tok, progress_bar=True,
                       disk_full_hint="free space (or use another --out) and rerun with --resume to continue")
        after = self.held_out_mse(model)
        if after is not None:
            log.write({"step": training.max_steps, "phase": PHASE, "held_out_mse": after})
        log.close()
        summary = {
            "identity": self.identity, "finished": True,
            "teacher": self.teacher_path, "teacher_text": self.options.teacher_text, "student_init": self.model_path,
            "init_method": self.init.method, "mode": self.init.mode, "new_rows_start": self.init.new_rows_start,
            "trained_rows": "new rows only (extension mode)" if new_rows_from is not None else
            "every input-embedding row except special and padding rows (and an untied head's)",
            "data": {"corpus": self.corpus, "parallel": self.parallel,
                     "sha256": {path: sha256_path(path) for path in [*self.corpus, *self.parallel]},
                     **self.data_summary},
            "loss": {"layers": self.options.layers, "hidden_weight": self.options.hidden_weight,
                     "logit_kl_weight": self.options.logit_kl_weight, "ntp_weight": self.options.ntp_weight,
                     "ntp_scaling": self.options.ntp_scaling,
                     **({"pooling": self.options.pooling, "source_side_weight": self.options.source_side_weight,
                         "word_weight": self.options.word_weight}
                        if self.options.teacher_text == "parallel" else {}),
                     "teacher_cached": self.options.logit_kl_weight == 0},
            "held_out_mse": {"before": before, "after": after},
            "options": dataclasses.asdict(self.options), "training": dataclasses.asdict(training),
            "steps": training.max_steps, "device": str(self.device),
            "train_seconds": round(result.train_seconds, 2), "train_loss": result.train_loss,
            "wall_seconds": round(time.perf_counter() - started, 2),
        }
        self._save(model, result, checkpoint_dtype(self.student_config), summary)
        return DistillResult(self.out, summary)

    def _training_options(self) -> TrainingOptions:
        training = self.training
        if training.learning_rate is None:
            training = dataclasses.replace(training, learning_rate=DISTILL_LEARNING_RATE)
        if self.options.epochs is not None:
            per_step = training.per_device_train_batch_size * training.gradient_accumulation_steps
            steps = max(1, math.ceil(len(self.train_items) * self.options.epochs / per_step))
            training = dataclasses.replace(training, max_steps=steps)
        return training

    def _write_record(self, record: dict[str, Any]) -> None:
        with atomic_file(self.out / DISTILL_FILE) as handle:
            json.dump(record, handle, indent=2, ensure_ascii=False)

    def _save(self, model: Any, result: Any, dtype: torch.dtype, summary: dict[str, Any]) -> None:
        """Model, tokenizer and the init's records into a temp folder inside ``out``, renamed in; the summary last."""
        tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=self.out))
        try:
            save_trained(model, result, tmp, dtype)
            self.student_tok.save_pretrained(tmp)
            for name in (TRANSFER_SUMMARY_FILE, PROVENANCE_FILE):
                if (Path(self.model_path) / name).is_file():
                    shutil.copyfile(Path(self.model_path) / name, tmp / name)
            match_umask(tmp)
            for path in tmp.iterdir():
                os.replace(path, self.out / path.name)
        except Exception as exc:  # safetensors' own error for a full disk is no OSError
            if disk_full(exc, self.out):
                raise UserError(f"disk full while saving the model to {self.out}: free space and rerun with "
                                "--resume") from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._write_record(summary)
        shutil.rmtree(self.out / CHECKPOINTS, ignore_errors=True)


def distill_embeddings(model: str | os.PathLike, teacher: str | os.PathLike | None = None, *,
                       options: DistillOptions | None = None, training: TrainingOptions | None = None,
                       corpus: Sequence[str | os.PathLike] = (), parallel: Sequence[str | os.PathLike] | None = None,
                       out: str | os.PathLike, overwrite: bool = False, resume: bool = False,
                       trainable: Callable[[Any], None] | None = None, callbacks: Sequence[Any] = ()) -> DistillResult:
    """Distill the frozen ``teacher`` into the new embedding rows of ``model`` (a ``langgraft init`` output).

    ``teacher``: the source model (default: the source recorded in ``model``'s transfer summary).
    ``options.teacher_text``: ``"same"`` reads ``corpus`` (target text) with both tokenizers;
    ``"parallel"`` reads ``parallel = (source_file, target_file)``. ``training``: steps, learning
    rate, precision (default :func:`distill_training`). ``trainable(model)``: called after the
    rows are made trainable, to unfreeze more (e.g. a module's parameters). ``out`` gets a stock
    checkpoint, ``distill_summary.json`` and ``metrics.jsonl``; ``resume`` continues an
    interrupted run there. Bad input is a :class:`UserError` before anything is written.
    """
    run = _Run(str(model), None if teacher is None else str(teacher), options or DistillOptions(),
               training or distill_training(), [str(c) for c in corpus], parallel, str(out), overwrite, resume,
               trainable, callbacks)
    return run.run()


__all__ = ["distill_embeddings", "distill_training", "read_init_record", "DistillResult", "InitRecord",
           "DISTILL_FILE", "TRAINING_DEFAULTS"]
