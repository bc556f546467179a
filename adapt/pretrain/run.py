"""Continued pretraining: MLM for encoders, CLM for decoders, on HF ``Trainer``.

A run has up to two phases, each its own ``Trainer`` (so each phase gets its own optimizer,
learning rate and schedule, and a distributed wrapper that sees exactly its trainable weights):

1. ``embeddings`` (``embedding_steps`` steps at ``embedding_learning_rate``): only the input
   embedding rows, an untied output embedding and the output bias train; the body is frozen.
   Newly initialised vocabularies adapt before the body is disturbed.
2. ``full`` (the remaining ``max_steps - embedding_steps`` steps at ``learning_rate``), or
   ``module`` when :func:`pretrain` gets a ``language_module`` callable: the base stays frozen and
   a language module (LoRA, MAD-X, SFT from :mod:`langgraft.adapters`) trains instead, each of its
   phases (SFT has two) for ``max_steps - embedding_steps`` steps, without weight decay.

Every phase trains through :func:`langgraft.training.train` (the one training path: precision,
new-rows-only training, the chunked LM loss on the scored rows only, sealed checkpoints and
resume, FSDP/DeepSpeed) with the packed stream of :mod:`langgraft.adapt.pretrain.data` and the callbacks
of :mod:`langgraft.adapt.pretrain.callbacks`. Layout of ``out``::

    out/config.json, model.safetensors, tokenizer*  final model (stock save_pretrained); with a
                                                     language module: the base after phase 1, if it ran
    out/metrics.jsonl, loss_curve.png, runs/         logs (runs/ = TensorBoard, when installed)
    out/langgraft_pretrain.json                      what the run is (checked on --resume)
    out/checkpoints/<phase>/checkpoint-N             sealed Trainer checkpoints (module/<phase>/ for modules)
    out/checkpoints/embeddings/final                 model after phase 1 (start of phase 2)
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from langgraft.adapters.base import Fit
from langgraft.atomic import atomic_file, match_umask
from langgraft.errors import UserError
from langgraft.models import (default_max_length, load_config, load_language_model, load_tokenizer,
                              objective_from_config, resolve_model_path)
from langgraft.options import option
from langgraft.outputs import OVERWRITE_HELP, check_output, clear_output, disk_full
from langgraft.sidecars import read_sidecar
from langgraft.training.options import LOGGING, SCALE, SCHEDULE, TrainingOptions
from langgraft.vocab.tokenizers import read_extension_info

RUN_FILE = "langgraft_pretrain.json"
FULL_LEARNING_RATE = 5e-5  # phase 2 without a language module, when no learning rate is given
DATA = "data order and mixing"
# language_module(model, fit) -> trained module: make the model trainable your way (base frozen),
# call fit(...) once per phase, return what the caller will save (e.g. ModuleKind.train(...)). An
# ``identity`` attribute (JSON-able, e.g. kind + options), if present, is recorded and checked on resume.
LanguageModulePhase = Callable[[Any, Fit], Any]


@dataclass(kw_only=True)
class PretrainOptions(TrainingOptions):
    """Options of ``langgraft pretrain``: :class:`~langgraft.training.TrainingOptions` plus the run's own."""

    model: str = option(help="model directory or hub name, with an LM head")
    corpus: list[str] = option(help="target-language training text file(s)")
    out: str = option(help="run directory: final model, metrics, checkpoints")
    eval_corpus: str | None = option(None, help="held-out text: loss and bits per character every --eval-steps")
    resume: bool = option(False, help="continue the run in --out from its last checkpoint", result=False)
    overwrite: bool = option(False, help=OVERWRITE_HELP, result=False)
    max_steps: int = option(1000, help="optimizer steps of the whole run (both phases)", gt=0, group=SCHEDULE)
    embedding_steps: int = option(0, help="first steps train only embeddings and output bias (body frozen)", ge=0,
                                  group=SCHEDULE)
    learning_rate: float | None = option(None, help="learning rate of phase 2 (default: 5e-5 for the full model, "
                                         "the kind's own for a module)", gt=0, group=SCHEDULE)
    embedding_learning_rate: float = option(1e-3, help="learning rate of the embeddings phase", gt=0, group=SCHEDULE)
    max_seq_length: int = option(128, help="tokens per packed sequence", gt=0, group=SCHEDULE)
    mlm_probability: float = option(0.15, help="share of tokens masked (MLM)", gt=0, lt=1, group=SCHEDULE)
    shuffle_buffer: int = option(10_000, help="shuffle each corpus anew at every pass, seeded by --seed: its 16 KiB "
                                 "chunks in a random order, then a buffer of N documents (0: file order, no shuffling)",
                                 ge=0, metavar="N", group=DATA)
    corpus_alpha: float = option(0.3, help="temperature for several --corpus files: p_i ~ size_i ** alpha", ge=0,
                                 group=DATA)
    replay_corpus: str | None = option(None, help="source-language text replayed to limit forgetting", group=DATA)
    replay_ratio: float = option(0.0, help="share of documents from --replay-corpus", ge=0, lt=1, group=DATA)
    train_new_rows_only: bool = option(False, help="extended vocabularies: in the embeddings and the head only the "
                                       "new rows train (and have optimizer state); the source rows stay bit-identical",
                                       group=SCALE)
    loss_chunk_tokens: int = option(1024, help="compute the LM loss this many scored tokens at a time, so the "
                                    "tokens x vocabulary logits are never built at once (0: all at once)", ge=0,
                                    group=SCALE, result=False)
    eval_steps: int = option(500, help="held-out evaluation every N steps", gt=0, group=LOGGING, result=False)
    eval_batch_size: int = option(16, help="held-out evaluation batch size", gt=0, group=LOGGING, result=False)
    report_to: list[str] = option(default_factory=lambda: ["auto"], help="auto: TensorBoard logs in OUT/runs when "
                                  "tensorboard is installed; tensorboard: the same, required; none: off; other names "
                                  "are Trainer integrations (wandb, mlflow, ...)", group=LOGGING, result=False)

    def check(self) -> None:
        """Checks that look at the file system or at each other (ranges are checked when the config is built)."""
        if self.embedding_steps > self.max_steps:
            raise UserError(f"--embedding-steps {self.embedding_steps} must be between 0 and --max-steps {self.max_steps}")
        if not self.corpus:
            raise UserError("give at least one --corpus file")
        if self.resume and self.overwrite:
            raise UserError("--resume continues the run in --out and --overwrite replaces it; choose one")
        if self.replay_ratio > 0 and self.replay_corpus is None:
            raise UserError("--replay-ratio needs --replay-corpus (source-language text)")
        for path in [*self.corpus, self.eval_corpus, self.replay_corpus]:
            if path is not None and not Path(path).exists():
                raise UserError(f"corpus {path} not found; check the path")
        if "tensorboard" in self.report_to:
            # deferred: keeps torch, transformers and peft off `langgraft --help`
            from langgraft.adapt.pretrain.callbacks import tensorboard_installed

            if not tensorboard_installed():
                raise UserError("--report-to tensorboard needs the tensorboard package: pip install tensorboard "
                                "(or leave --report-to at auto)")


@dataclass
class PretrainResult:
    out: Path
    objective: str
    steps: int  # run-level optimizer steps (a two-phase language module counts both phases)
    eval: dict[str, float] | None = None
    module: Any = None
    train_seconds: float = 0.0  # Trainer's train_runtime, summed over the phases run by this call


@dataclass
class _Phase:
    name: str  # "embeddings", "full" or "module" ("module/<phase>" while a module phase trains)
    steps: int
    learning_rate: float | None  # None only for "module": the module's own default
    step_offset: int  # run-level steps before this phase


def embedding_parameters(model: Any) -> list[Any]:
    """Input embeddings, an untied output embedding and its bias: what phase 1 trains."""
    params = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None:
        params += [p for p in (output.weight, getattr(output, "bias", None)) if p is not None]
    unique: dict[int, Any] = {id(p): p for p in params}
    return list(unique.values())


def set_trainable(model: Any, phase: str) -> None:
    """Freeze the body for the embeddings phase; unfreeze everything for the full phase."""
    if phase == "embeddings":
        model.requires_grad_(False)
        for parameter in embedding_parameters(model):
            parameter.requires_grad_(True)
    elif phase == "full":
        model.requires_grad_(True)


def model_fingerprint(config: Any, tokenizer: Any) -> dict[str, Any]:
    """What must match for a checkpoint to belong to this model."""
    keys = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "n_embd", "n_layer")
    return {**{k: getattr(config, k) for k in keys if hasattr(config, k)}, "tokenizer_size": len(tokenizer)}


def _checkpoint_fingerprint_mismatch(folder: Path, expected: dict[str, Any]) -> str | None:
    config_file = folder / "config.json"
    if not config_file.exists():  # a PEFT checkpoint holds the adapter only
        return None
    saved = read_sidecar(config_file, "the checkpoint's model config", f"delete {folder} to start that phase afresh")
    for key, value in expected.items():
        if key in saved and saved[key] != value:
            return f"{key}={saved[key]} (this model has {value})"
    return None


def _wait_for_everyone() -> None:
    """Barrier across processes (no-op in a single process)."""
    # deferred: keeps torch, accelerate and safetensors off `langgraft --help`
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def new_rows_start(model_path: str) -> int:
    """First new row of an extended vocabulary, for ``--train-new-rows-only``.

    Read from the ``transfer_summary.json`` that ``langgraft init --mode extend`` writes (with the
    ``langgraft_extension.json`` of the tokenizer it names), or from a ``langgraft_extension.json``
    next to the model. A replaced vocabulary has no source rows to keep: refused.
    """
    # deferred: keeps torch off `langgraft --help`
    from langgraft.vocab.transfer import TRANSFER_SUMMARY_FILE

    summary_file = Path(model_path) / TRANSFER_SUMMARY_FILE
    if summary_file.is_file():
        summary = read_sidecar(summary_file, "the transfer summary", "re-run `langgraft init` for this model",
                               {"mode": str, "source_vocab_size": int})
        if summary["mode"] != "extend":
            raise UserError(f"--train-new-rows-only: {model_path} has a replaced vocabulary (langgraft init --mode "
                            f"{summary.get('mode')}): every row is new; drop the flag to train the embeddings fully")
        tokenizer_dir = summary.get("target_tokenizer")
        extension = read_extension_info(tokenizer_dir) if tokenizer_dir and Path(tokenizer_dir).is_dir() else None
        source_rows = summary["source_vocab_size"]
        return min(extension["original_vocab_size"], source_rows) if extension else source_rows
    extension = read_extension_info(model_path)
    if extension is None:
        raise UserError(f"--train-new-rows-only needs an extended vocabulary, but {model_path} has neither "
                        "transfer_summary.json (langgraft init --mode extend) nor langgraft_extension.json; "
                        "drop the flag or pretrain the output of `langgraft init --mode extend`")
    return extension["original_vocab_size"]


class _Run:
    """One pretraining run in ``config.out``: phases, resume bookkeeping, final save."""

    def __init__(self, config: PretrainOptions, language_module: LanguageModulePhase | None,
                 callbacks: Sequence[Any] = ()):
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from langgraft.adapt.pretrain.callbacks import MetricsLog
        from langgraft.training import check_options, checkpoint_dtype, training_arguments

        config.check()
        check_options(config)
        self.config, self.language_module, self.user_callbacks = config, language_module, list(callbacks)
        self.out = Path(config.out)
        self.model_path = resolve_model_path(config.model)
        self.model_config = load_config(self.model_path)
        self.objective = objective_from_config(self.model_config)
        self.tokenizer = load_tokenizer(self.model_path)
        if self.objective == "mlm" and self.tokenizer.mask_token_id is None:
            raise UserError(f"tokenizer of {config.model} has no mask token, needed for masked-LM pretraining")
        limit = default_max_length(self.model_config, self.tokenizer, cap=1 << 20)
        if config.max_seq_length > limit:
            raise UserError(f"--max-seq-length {config.max_seq_length} exceeds what {config.model} supports ({limit})")
        self.new_rows = new_rows_start(self.model_path) if config.train_new_rows_only else None
        self.fingerprint = model_fingerprint(self.model_config, self.tokenizer)
        self.save_dtype = checkpoint_dtype(self.model_config)
        # TrainingArguments set up the (distributed) process state: which process this is, how many there are
        probe = training_arguments(dataclasses.replace(config, learning_rate=FULL_LEARNING_RATE), self.out)
        self.is_main = probe.process_index == 0
        self.global_batch = config.per_device_train_batch_size * config.gradient_accumulation_steps * probe.world_size
        self.phases = self._plan()
        self.log = MetricsLog(self.out, enabled=self.is_main, tensorboard=self._tensorboard())

    # ---------------------------------------------------------------- setup

    def _plan(self) -> list[_Phase]:
        c = self.config
        phases = []
        if c.embedding_steps:
            phases.append(_Phase("embeddings", c.embedding_steps, c.embedding_learning_rate, 0))
        if c.max_steps > c.embedding_steps:
            if self.language_module is not None:
                phases.append(_Phase("module", c.max_steps - c.embedding_steps, c.learning_rate, c.embedding_steps))
            else:
                phases.append(_Phase("full", c.max_steps - c.embedding_steps, c.learning_rate or FULL_LEARNING_RATE,
                                     c.embedding_steps))
        return phases

    def _identity(self) -> dict[str, Any]:
        c = self.config
        identity = {
            "model": self.model_path, "objective": self.objective, "fingerprint": self.fingerprint,
            "data": {"corpus": [str(Path(p).resolve()) for p in c.corpus], "seed": c.seed,
                     "max_seq_length": c.max_seq_length, "global_batch_size": self.global_batch,
                     "corpus_alpha": c.corpus_alpha, "replay_corpus": c.replay_corpus and str(Path(c.replay_corpus).resolve()),
                     "replay_ratio": c.replay_ratio, "embedding_steps": c.embedding_steps,
                     "mlm_probability": c.mlm_probability, "shuffle_buffer": c.shuffle_buffer},
        }
        if c.train_new_rows_only:  # the checkpoints hold separate new-row tensors: only such a run fits them
            identity["data"]["train_new_rows_only"] = True
        if self.language_module is not None:  # kind and options, when the callable says (else only that there is one)
            identity["data"]["language_module"] = getattr(self.language_module, "identity", True)
        return identity

    def check_out(self) -> None:
        """A new run needs a new or empty ``--out``; ``--resume`` needs the same model and data.

        Nothing is written here: the run record follows in :meth:`_start`, once the model has
        loaded too, so a corrected rerun into the same ``--out`` is never blocked by a failed start."""
        # deferred: keeps torch off `langgraft --help`
        from langgraft.adapt.pretrain.data import check_corpus_fits

        c = self.config
        run_file = self.out / RUN_FILE
        identity = self._identity()
        resuming = c.resume and run_file.exists()
        hint = "pass --resume to continue its run or --overwrite to replace it" if run_file.exists() else \
            "pass --overwrite to replace it"
        check_output(self.out, inputs=[self.model_path, *c.corpus, c.eval_corpus, c.replay_corpus],
                     overwrite=c.overwrite or resuming, replace_hint=hint)
        if resuming:
            saved = read_sidecar(run_file, "the pretraining run record",
                                 "restore it from a backup, or start a new run in another --out",
                                 {"fingerprint": dict, "data": dict, "model": str})
            if saved["fingerprint"] != identity["fingerprint"]:
                raise UserError(f"checkpoints in {self.out} come from another model ({saved['model']}); "
                                f"resume with --model {saved['model']} or choose another --out")
            saved["data"].setdefault("shuffle_buffer", 0)  # runs from before shuffling read in file order
            for key in sorted(identity["data"].keys() | saved["data"].keys()):
                value = identity["data"].get(key)
                if saved["data"].get(key) != value:
                    raise UserError(f"cannot resume {self.out}: {key} was {saved['data'].get(key)!r}, now {value!r}; "
                                    "resume with the original data and module options (same order of examples)")
            from langgraft.training.checkpoints import check_resumable, valid_checkpoints  # loads torch: off --help

            for phase in self.phases:  # refused before the model loads, not by Trainer mid-train
                sealed, _ = valid_checkpoints(self.phase_dir(phase))
                if sealed:
                    check_resumable(sealed[-1])
        for path in [*c.corpus, *([c.replay_corpus] if c.replay_ratio else [])]:
            check_corpus_fits(self.tokenizer, path, self.objective, c.max_seq_length)
        self.identity = identity

    def _start(self) -> None:
        """Write the run record once the source model has loaded: the first write into ``--out``."""

        if self.started:
            return
        _wait_for_everyone()  # every process checked and loaded before the main one writes
        if self.is_main:
            if self.config.overwrite:
                clear_output(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
            with atomic_file(self.out / RUN_FILE) as handle:
                json.dump(self.identity, handle, indent=2)
        _wait_for_everyone()
        self.started = True

    def _tensorboard(self) -> bool:
        """One TensorBoard log for the whole run (``out/runs``, run-level steps), written by :class:`MetricsLog`."""
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from langgraft.adapt.pretrain.callbacks import tensorboard_installed

        wanted = self.config.report_to
        return "tensorboard" in wanted or ("auto" in wanted and tensorboard_installed())

    def phase_dir(self, phase: _Phase) -> Path:
        return self.out / "checkpoints" / phase.name

    def _load(self, source: str) -> Any:
        """The LM in the dtype the precision options ask for, with the chosen attention kernel."""
        # deferred: keeps torch off `langgraft --help`
        from langgraft.training import load_dtype

        extra = {"attn_implementation": self.config.attn_implementation} if self.config.attn_implementation else {}
        model, _ = load_language_model(source, dtype=load_dtype(self.config, self.model_config), **extra)
        return model

    # ---------------------------------------------------------------- phases

    def run(self) -> PretrainResult:
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from langgraft.training import is_sealed

        self.check_out()
        self.started = False
        final_eval = None
        module = None
        model_source = self.model_path
        self.train_seconds = 0.0
        self.steps_done = 0
        for phase in self.phases:
            final = self.phase_dir(phase) / "final"
            if phase.name == "embeddings" and is_sealed(final):
                model_source = str(final)  # phase 1 finished in an earlier invocation
                self.steps_done = phase.steps
                continue
            model = self._load(model_source)
            self._start()
            if phase.name == "module":  # the base stays frozen; out/ holds it when phase 1 changed it
                if model_source != self.model_path:
                    self._save_model(model, self.out, None)
                module = self.language_module(model, self._fit_for(phase))
                final_eval = self._last_eval() or final_eval
                continue
            result = self._train(model, phase, self.user_callbacks)
            final_eval = self._last_eval() or final_eval
            if phase.name == "embeddings" and len(self.phases) > 1:
                self._save_model(model, final, result)
                model_source = str(final)
            else:
                self._save_model(model, self.out, result)
        self._start()  # every phase had finished in earlier invocations
        self._finish()
        return PretrainResult(self.out, self.objective, self.steps_done, final_eval, module, self.train_seconds)

    def _fit_for(self, parent: _Phase) -> Fit:
        """The ``Fit`` handed to a language module: each call trains one module phase of ``parent.steps`` steps.

        ``--learning-rate``, when given, overrides the module's own default. Module phases follow one
        another in run-level steps and in the data stream (SFT's phase 2 sees new text), and each
        checkpoints and resumes in its own folder.
        """
        offset = parent.step_offset

        def fit(model: Any, learning_rate: float, callbacks: Sequence[Any], phase: str) -> dict[str, float]:
            nonlocal offset
            name = f"{parent.name}/{phase}" if phase else parent.name
            module_phase = _Phase(name, parent.steps, parent.learning_rate or learning_rate, offset)
            offset += parent.steps
            return self._train(model, module_phase, [*self.user_callbacks, *callbacks]).stats

        return fit

    def _eval_callback(self, phase: str, step_offset: int) -> Any:
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from langgraft.adapt.pretrain.callbacks import HeldOutEvalCallback

        return HeldOutEvalCallback(self.log, phase, step_offset, self.tokenizer, Path(self.config.eval_corpus),
                                   self.config.eval_steps, self.objective, self.config.max_seq_length,
                                   self.config.eval_batch_size)

    def _last_eval(self) -> dict[str, float] | None:
        evals = [r for r in self.log.records() if "eval_bpc" in r]
        return {k: evals[-1][k] for k in ("step", "eval_loss", "eval_bpc")} if evals else None

    def _check_checkpoint(self, checkpoint: Path) -> None:
        mismatch = _checkpoint_fingerprint_mismatch(checkpoint, self.fingerprint)
        if mismatch:
            raise UserError(f"checkpoint {checkpoint} belongs to another model ({mismatch}); "
                            "resume with the model that started the run or choose another --out")

    def _resume_step(self, phase: _Phase) -> int | None:
        """Step of the checkpoint ``phase`` will resume from (half-written ones are removed), or None."""
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from accelerate import PartialState

        from langgraft.training import checkpoint_step, latest_checkpoint

        with PartialState().main_process_first():
            checkpoint = latest_checkpoint(self.phase_dir(phase), remove_broken=self.is_main)
        if checkpoint is None:
            return None
        self._check_checkpoint(checkpoint)
        return checkpoint_step(checkpoint)

    def _train(self, model: Any, phase: _Phase, extra_callbacks: list[Any]) -> Any:
        """One phase (or module phase) through :func:`langgraft.training.train`; its :class:`TrainResult`."""

        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from langgraft.adapt.pretrain.callbacks import LossCurveCallback, MetricsCallback
        from langgraft.adapt.pretrain.data import PackedLMCollator, PackedLMStream
        from langgraft.training import LMLoss, train

        c = self.config
        done = self._resume_step(phase) if c.resume else None
        self.steps_done = phase.step_offset + phase.steps
        if self.is_main and (done is None or done < phase.steps):  # records past the checkpoint are recomputed
            self.log.truncate_after(phase.step_offset + (done or 0) if phase.step_offset or done else -1)
            if done is None and phase.step_offset == 0 and c.eval_corpus:
                self._eval_callback(phase.name, 0).evaluate(model, 0)  # step 0: quality of the initialisation
        dataset = PackedLMStream(self.tokenizer, c.corpus, self.objective, c.max_seq_length, seed=c.seed,
                                 alpha=c.corpus_alpha, replay_corpus=c.replay_corpus, replay_ratio=c.replay_ratio,
                                 start_block=phase.step_offset * self.global_batch, shuffle_buffer=c.shuffle_buffer)
        forward = inspect.signature(getattr(model, "get_base_model", lambda: model)().forward).parameters
        collator = PackedLMCollator(self.tokenizer, self.objective, c.mlm_probability, c.seed,
                                    position_ids="position_ids" in forward)
        callbacks = [MetricsCallback(self.log, phase.name, phase.step_offset), LossCurveCallback(self.log),
                     *extra_callbacks]
        if c.eval_corpus:
            callbacks.insert(1, self._eval_callback(phase.name, phase.step_offset))
        module = phase.name.startswith("module")
        options = dataclasses.replace(
            c, max_steps=phase.steps, learning_rate=phase.learning_rate,
            # a module's deltas are pulled toward the base by its own method (sft: L1 toward θ0), never toward 0
            weight_decay=0.0 if module else c.weight_decay)
        result = train(model, dataset, collator, options, self.phase_dir(phase),
                       loss=LMLoss(self.objective, c.loss_chunk_tokens),
                       trainable=None if module else (lambda m: set_trainable(m, phase.name)),
                       new_rows_from=None if module else self.new_rows, callbacks=callbacks, resume=c.resume,
                       check_checkpoint=self._check_checkpoint, processing_class=self.tokenizer, progress_bar=True,
                       disk_full_hint="free space (or use another --out) and rerun with --resume to continue")
        self.train_seconds += result.train_seconds
        return result

    # ---------------------------------------------------------------- outputs

    def _save_model(self, model: Any, target: Path, result: Any) -> None:
        """Save model + tokenizer into a temp folder inside ``target``, then rename the files in.

        A stock checkpoint in the source checkpoint's dtype (new rows folded in). ``target`` may
        hold other files (``out`` holds logs and checkpoints), so the files are renamed one by one;
        a seal written last marks the set complete.
        """

        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from langgraft.training import save_trained, seal_checkpoint

        if self.is_main:
            target.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=target))
            try:
                save_trained(model, result, tmp, self.save_dtype)
                self.tokenizer.save_pretrained(tmp)
                match_umask(tmp)
                for path in tmp.iterdir():
                    os.replace(path, target / path.name)
                if target != self.out:
                    seal_checkpoint(target)
            except Exception as exc:  # safetensors' own error for a full disk is no OSError
                if disk_full(exc, target):
                    raise UserError(f"disk full while saving the model to {target}: free space and rerun "
                                    "with --resume") from None
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        _wait_for_everyone()

    def _finish(self) -> None:
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from langgraft.adapt.pretrain.callbacks import plot_loss_curve

        if not self.is_main:
            return
        self.log.close()
        plot_loss_curve(self.log)
        record = read_sidecar(self.out / RUN_FILE, "the pretraining run record", "start a new run in another --out")
        record.update(finished=True, config=asdict(self.config))
        with atomic_file(self.out / RUN_FILE) as handle:
            json.dump(record, handle, indent=2)


def pretrain(config: PretrainOptions, *, language_module: LanguageModulePhase | None = None,
             callbacks: Sequence[Any] = ()) -> PretrainResult:
    """Run (or with ``config.resume``, continue) continued pretraining; see the module docstring.

    ``callbacks``: extra ``TrainerCallback`` objects added to every phase's Trainer.

    ``language_module(model, fit)`` switches phase 2 to a language module: it receives the LM
    after phase 1 (embeddings trained, body otherwise untouched) and a ``fit(model,
    learning_rate, callbacks, phase) -> {"train_seconds", "train_loss"}`` that trains whatever is
    trainable in ``model`` for ``max_steps - embedding_steps`` steps on this run's packed stream,
    with this run's loss, checkpoints (resumable per phase), logging and held-out bpc
    (``config.learning_rate``, when set, overrides the ``learning_rate`` given to ``fit``). It must
    freeze the base itself, call ``fit`` once per phase and return the module;
    :attr:`PretrainResult.module` is the returned object (the caller saves it) and ``out`` holds
    the base model when phase 1 changed it. :func:`langgraft.adapt.pretrain.language_modules.pretrain_language_module`
    does all this for the module kinds of :mod:`langgraft.adapters`.
    """
    return _Run(config, language_module, callbacks).run()
