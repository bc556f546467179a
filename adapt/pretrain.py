"""Continued pretraining: MLM for encoders, CLM for decoders, on HF ``Trainer``.

A run has up to two stages, each its own ``Trainer`` (so each stage gets its own optimizer,
learning rate and schedule, and a distributed wrapper that sees exactly its trainable weights):

1. ``embeddings`` (``embedding_steps`` steps at ``embedding_learning_rate``): only the input
   embedding rows, an untied output embedding and the output bias train; the body is frozen.
   Newly initialised vocabularies adapt before the body is disturbed.
2. ``full`` (the remaining ``max_steps - embedding_steps`` steps at ``learning_rate``), or
   ``module`` when :func:`pretrain` gets a ``language_module`` callable: the base stays frozen and
   a language module (LoRA, MAD-X, SFT from :mod:`langgraft.adapters`) trains instead, each of its
   phases (SFT has two) for ``max_steps - embedding_steps`` steps, without weight decay.

Trainer is extended only through public arguments and callbacks: the packed stream
(:mod:`langgraft.adapt.data`), ``compute_loss_func`` plus PyTorch hooks that compute the LM
head on the scored rows only (:mod:`langgraft.lm`), and the callbacks of
:mod:`langgraft.adapt.callbacks`. Layout of ``out``::

    out/config.json, model.safetensors, tokenizer*  final model (stock save_pretrained); with a
                                                     language module: the base after stage 1, if it ran
    out/metrics.jsonl, loss_curve.png, runs/         logs (runs/ = TensorBoard, when installed)
    out/langgraft_pretrain.json                      what the run is (checked on --resume)
    out/checkpoints/<stage>/checkpoint-N             sealed Trainer checkpoints (module/<phase>/ for modules)
    out/checkpoints/embeddings/final                 model after stage 1 (start of stage 2)
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from langgraft.errors import UserError

RUN_FILE = "langgraft_pretrain.json"
FULL_LEARNING_RATE = 5e-5  # stage 2 without a language module, when no learning rate is given
# report_to values langgraft handles itself; the others are Trainer integrations (wandb, mlflow, ...)
OWN_REPORTERS = ("auto", "tensorboard", "none")
# fit(model, learning_rate, callbacks, stage) -> stats: the signature of langgraft.adapters.base.Fit
Fit = Callable[[Any, float, Sequence[Any], str], dict[str, float]]
# language_module(model, fit) -> trained module: make the model trainable your way (base frozen),
# call fit(...) once per phase, return what the caller will save (e.g. ModuleKind.train(...)). An
# ``identity`` attribute (JSON-able, e.g. kind + options), if present, is recorded and checked on resume.
LanguageModuleStage = Callable[[Any, Fit], Any]


@dataclass
class PretrainConfig:
    """Options of ``langgraft pretrain``; names follow ``TrainingArguments`` where one exists."""

    model: str
    corpus: list[str]
    out: str
    eval_corpus: str | None = None
    max_steps: int = 1000
    embedding_steps: int = 0
    learning_rate: float | None = None  # None: FULL_LEARNING_RATE, or the language module's own default
    embedding_learning_rate: float = 1e-3
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 128
    warmup_steps: float = 0.0
    weight_decay: float = 0.01
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    save_steps: int = 500
    save_total_limit: int | None = 2
    eval_steps: int = 500
    logging_steps: int = 10
    seed: int = 42
    mlm_probability: float = 0.15
    corpus_alpha: float = 0.3
    replay_corpus: str | None = None
    replay_ratio: float = 0.0
    shuffle_buffer: int = 10_000  # per corpus: chunk order + a buffer of this many documents; 0: file order
    eval_batch_size: int = 16
    resume: bool = False
    use_cpu: bool = False
    # "auto": TensorBoard in out/runs when installed; "tensorboard": the same, required; "none": off;
    # anything else goes to Trainer's report_to (wandb, mlflow, ...)
    report_to: list[str] = field(default_factory=lambda: ["auto"])

    def check(self) -> None:
        if self.max_steps <= 0:
            raise UserError(f"--max-steps must be positive, got {self.max_steps}")
        if not 0 <= self.embedding_steps <= self.max_steps:
            raise UserError(f"--embedding-steps {self.embedding_steps} must be between 0 and --max-steps {self.max_steps}")
        for name in ("save_steps", "eval_steps", "logging_steps", "per_device_train_batch_size",
                     "gradient_accumulation_steps", "max_seq_length"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.shuffle_buffer < 0:
            raise UserError(f"--shuffle-buffer must be 0 (no shuffling) or positive, got {self.shuffle_buffer}")
        if not self.corpus:
            raise UserError("give at least one --corpus file")
        for path in [*self.corpus, self.eval_corpus, self.replay_corpus]:
            if path is not None and not Path(path).exists():
                raise UserError(f"corpus {path} not found; check the path")
        if "tensorboard" in self.report_to:
            from langgraft.adapt.callbacks import tensorboard_installed

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
    train_seconds: float = 0.0  # Trainer's train_runtime, summed over the stages run by this call


@dataclass
class _Stage:
    name: str  # "embeddings", "full" or "module" ("module/<phase>" while a module phase trains)
    steps: int
    learning_rate: float | None  # None only for "module": the module's own default
    step_offset: int  # run-level steps before this stage


def embedding_parameters(model: Any) -> list[Any]:
    """Input embeddings, an untied output embedding and its bias: what stage 1 trains."""
    params = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None:
        params += [p for p in (output.weight, getattr(output, "bias", None)) if p is not None]
    unique: dict[int, Any] = {id(p): p for p in params}
    return list(unique.values())


def set_trainable(model: Any, stage: str) -> None:
    """Freeze the body for the embeddings stage; unfreeze everything for the full stage."""
    if stage == "embeddings":
        model.requires_grad_(False)
        for parameter in embedding_parameters(model):
            parameter.requires_grad_(True)
    elif stage == "full":
        model.requires_grad_(True)


def model_fingerprint(config: Any, tokenizer: Any) -> dict[str, Any]:
    """What must match for a checkpoint to belong to this model."""
    keys = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "n_embd", "n_layer")
    return {**{k: getattr(config, k) for k in keys if hasattr(config, k)}, "tokenizer_size": len(tokenizer)}


def _checkpoint_fingerprint_mismatch(folder: Path, expected: dict[str, Any]) -> str | None:
    config_file = folder / "config.json"
    if not config_file.exists():  # a PEFT checkpoint holds the adapter only
        return None
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    for key, value in expected.items():
        if key in saved and saved[key] != value:
            return f"{key}={saved[key]} (this model has {value})"
    return None


def _has_gpu() -> bool:
    """Any accelerator; without one Trainer must be told ``use_cpu`` to run multi-process (gloo)."""
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available() or (
        hasattr(torch, "xpu") and torch.xpu.is_available())


def _wait_for_everyone() -> None:
    """Barrier across processes (no-op in a single process)."""
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def _is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _load_finished_stage(model: Any, checkpoint: Path) -> dict[str, float]:
    """Put the weights of a stage's last checkpoint into ``model``; its stats as ``fit`` reports them.

    Reads what Trainer wrote: a PEFT adapter (``adapter_model.safetensors``) or the model's
    safetensors shards. ``train_loss`` is the mean of the losses Trainer logged in that stage.
    """
    from safetensors.torch import load_file

    adapter = checkpoint / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(adapter)), adapter_name=model.active_adapter)
    else:
        for shard in sorted(checkpoint.glob("model*.safetensors")):
            unexpected = model.load_state_dict(load_file(str(shard)), strict=False).unexpected_keys
            if unexpected:
                raise UserError(f"checkpoint {checkpoint} does not fit this model ({unexpected[0]}); "
                                "resume with the model and module that started the run or choose another --out")
    history = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    losses = [record["loss"] for record in history if "loss" in record]
    return {"train_seconds": 0.0, "train_loss": round(sum(losses) / len(losses), 4) if losses else float("nan")}


class _Run:
    """One pretraining run in ``config.out``: stages, resume bookkeeping, final save."""

    def __init__(self, config: PretrainConfig, language_module: LanguageModuleStage | None,
                 callbacks: Sequence[Any] = ()):
        from langgraft.adapt.callbacks import MetricsLog
        from langgraft.models import default_max_length, objective_from_config
        from langgraft.models import load_config, load_tokenizer, resolve_model_path

        config.check()
        self.config, self.language_module, self.user_callbacks = config, language_module, list(callbacks)
        self.out = Path(config.out)
        self.model_path = resolve_model_path(config.model)
        model_config = load_config(self.model_path)
        self.objective = objective_from_config(model_config)
        self.tokenizer = load_tokenizer(self.model_path)
        if self.objective == "mlm" and self.tokenizer.mask_token_id is None:
            raise UserError(f"tokenizer of {config.model} has no mask token, needed for masked-LM pretraining")
        limit = default_max_length(model_config, self.tokenizer, cap=1 << 20)
        if config.max_seq_length > limit:
            raise UserError(f"--max-seq-length {config.max_seq_length} exceeds what {config.model} supports ({limit})")
        self.fingerprint = model_fingerprint(model_config, self.tokenizer)
        self.args_probe = self._training_arguments(_Stage("probe", 1, FULL_LEARNING_RATE, 0))
        self.is_main = self.args_probe.process_index == 0
        self.global_batch = (config.per_device_train_batch_size * config.gradient_accumulation_steps
                             * self.args_probe.world_size)
        self.stages = self._plan()
        self.log = MetricsLog(self.out, enabled=self.is_main, tensorboard=self._tensorboard())

    # ---------------------------------------------------------------- setup

    def _plan(self) -> list[_Stage]:
        c = self.config
        stages = []
        if c.embedding_steps:
            stages.append(_Stage("embeddings", c.embedding_steps, c.embedding_learning_rate, 0))
        if c.max_steps > c.embedding_steps:
            if self.language_module is not None:
                stages.append(_Stage("module", c.max_steps - c.embedding_steps, c.learning_rate, c.embedding_steps))
            else:
                stages.append(_Stage("full", c.max_steps - c.embedding_steps, c.learning_rate or FULL_LEARNING_RATE,
                                     c.embedding_steps))
        return stages

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
        if self.language_module is not None:  # kind and options, when the stage says (else only that there is one)
            identity["data"]["language_module"] = getattr(self.language_module, "identity", True)
        return identity

    def check_out(self) -> None:
        """A new run needs a new or empty ``--out``; ``--resume`` needs the same model and data."""
        from langgraft.atomic import atomic_file

        run_file = self.out / RUN_FILE
        identity = self._identity()
        if run_file.exists():
            saved = json.loads(run_file.read_text(encoding="utf-8"))
            if not self.config.resume:
                raise UserError(f"{self.out} already holds a pretraining run; pass --resume to continue it "
                                "or choose another --out")
            if saved["fingerprint"] != identity["fingerprint"]:
                raise UserError(f"checkpoints in {self.out} come from another model ({saved['model']}); "
                                f"resume with --model {saved['model']} or choose another --out")
            saved["data"].setdefault("shuffle_buffer", 0)  # runs from before shuffling read in file order
            for key in sorted(identity["data"].keys() | saved["data"].keys()):
                value = identity["data"].get(key)
                if saved["data"].get(key) != value:
                    raise UserError(f"cannot resume {self.out}: {key} was {saved['data'].get(key)!r}, now {value!r}; "
                                    "resume with the original data and module options (same order of examples)")
        elif self.out.exists() and any(self.out.iterdir()):
            raise UserError(f"--out {self.out} is not empty and holds no pretraining run; choose a new directory")
        _wait_for_everyone()  # every process checked before the main one writes
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            with atomic_file(run_file) as handle:
                json.dump(identity, handle, indent=2)
        _wait_for_everyone()
        for path in [*self.config.corpus, *([self.config.replay_corpus] if self.config.replay_ratio else [])]:
            from langgraft.adapt.data import check_corpus_fits

            check_corpus_fits(self.tokenizer, path, self.objective, self.config.max_seq_length)

    def _training_arguments(self, stage: _Stage) -> Any:
        from transformers import TrainingArguments

        c = self.config
        return TrainingArguments(
            output_dir=str(self.stage_dir(stage)), max_steps=stage.steps, learning_rate=stage.learning_rate,
            per_device_train_batch_size=c.per_device_train_batch_size,
            gradient_accumulation_steps=c.gradient_accumulation_steps, warmup_steps=c.warmup_steps,
            # a module's deltas are pulled toward the base by its own method (sft: L1 toward θ0), never toward 0
            weight_decay=0.0 if stage.name.startswith("module") else c.weight_decay,
            lr_scheduler_type=c.lr_scheduler_type, max_grad_norm=c.max_grad_norm,
            save_strategy="steps", save_steps=c.save_steps, save_total_limit=c.save_total_limit,
            logging_steps=c.logging_steps, seed=c.seed, data_seed=c.seed,
            report_to=[r for r in c.report_to if r not in OWN_REPORTERS],
            remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=False,
            use_cpu=c.use_cpu or not _has_gpu(), dataloader_pin_memory=not c.use_cpu and _has_gpu(),
            ddp_find_unused_parameters=False,
        )

    def _tensorboard(self) -> bool:
        """One TensorBoard log for the whole run (``out/runs``, run-level steps), written by :class:`MetricsLog`."""
        from langgraft.adapt.callbacks import tensorboard_installed

        wanted = self.config.report_to
        return "tensorboard" in wanted or ("auto" in wanted and tensorboard_installed())

    def stage_dir(self, stage: _Stage) -> Path:
        return self.out / "checkpoints" / stage.name

    # ---------------------------------------------------------------- stages

    def run(self) -> PretrainResult:
        from langgraft.adapt.callbacks import is_sealed
        from langgraft.models import load_language_model

        self.check_out()
        final_eval = None
        module = None
        model_source = self.model_path
        self.train_seconds = 0.0
        self.steps_done = 0
        for stage in self.stages:
            final = self.stage_dir(stage) / "final"
            if stage.name == "embeddings" and is_sealed(final):
                model_source = str(final)  # stage 1 finished in an earlier invocation
                self.steps_done = stage.steps
                continue
            model, _ = load_language_model(model_source)
            if stage.name == "module":  # the base stays frozen; out/ holds it when stage 1 changed it
                if model_source != self.model_path:
                    self._save_model(model, self.out)
                module = self.language_module(model, self._fit_for(stage))
            else:
                set_trainable(model, stage.name)
                self._train(model, stage, self.user_callbacks)
            final_eval = self._last_eval() or final_eval
            if stage.name == "embeddings" and len(self.stages) > 1:
                self._save_model(model, final)
                model_source = str(final)
            elif stage.name != "module":
                self._save_model(model, self.out)
        self._finish()
        return PretrainResult(self.out, self.objective, self.steps_done, final_eval, module, self.train_seconds)

    def _fit_for(self, stage: _Stage) -> Fit:
        """The ``Fit`` handed to a language module: each call trains one phase of ``stage.steps`` steps.

        ``--learning-rate``, when given, overrides the module's own default. Phases follow one
        another in run-level steps and in the data stream (SFT's phase 2 sees new text), and each
        checkpoints and resumes in its own folder.
        """
        offset = stage.step_offset

        def fit(model: Any, learning_rate: float, callbacks: Sequence[Any], phase: str) -> dict[str, float]:
            nonlocal offset
            name = f"{stage.name}/{phase}" if phase else stage.name
            phase_stage = _Stage(name, stage.steps, stage.learning_rate or learning_rate, offset)
            offset += stage.steps
            return self._train(model, phase_stage, [*self.user_callbacks, *callbacks])

        return fit

    def _eval_callback(self, stage: str, step_offset: int) -> Any:
        from langgraft.adapt.callbacks import HeldOutEvalCallback

        return HeldOutEvalCallback(self.log, stage, step_offset, self.tokenizer, Path(self.config.eval_corpus),
                                   self.config.eval_steps, self.objective, self.config.max_seq_length,
                                   self.config.eval_batch_size)

    def _last_eval(self) -> dict[str, float] | None:
        evals = [r for r in self.log.records() if "eval_bpc" in r]
        return {k: evals[-1][k] for k in ("step", "eval_loss", "eval_bpc")} if evals else None

    def _resume_checkpoint(self, stage: _Stage) -> Path | None:
        """Latest sealed checkpoint of ``stage`` (unsealed, half-written ones are removed)."""
        from langgraft.adapt.callbacks import valid_checkpoints

        sealed, broken = valid_checkpoints(self.stage_dir(stage))
        if self.is_main:
            for folder in broken:
                shutil.rmtree(folder, ignore_errors=True)
        if not sealed:
            return None
        mismatch = _checkpoint_fingerprint_mismatch(sealed[-1], self.fingerprint)
        if mismatch:
            raise UserError(f"checkpoint {sealed[-1]} belongs to another model ({mismatch}); "
                            "resume with the model that started the run or choose another --out")
        return sealed[-1]

    def _train(self, model: Any, stage: _Stage, extra_callbacks: list[Any]) -> dict[str, float]:
        import inspect

        from transformers import Trainer

        from langgraft.adapt.callbacks import (LossCurveCallback, MetricsCallback, SealCheckpointCallback,
                                               checkpoint_step)
        from langgraft.adapt.data import PackedLMCollator, PackedLMStream
        from langgraft.lm import SelectedRowsHead, selected_rows_loss

        c = self.config
        args = self._training_arguments(stage)
        with args.main_process_first(desc="checking checkpoints"):
            checkpoint = self._resume_checkpoint(stage) if c.resume else None
        self.steps_done = stage.step_offset + stage.steps
        if checkpoint is not None and checkpoint_step(checkpoint) >= stage.steps:
            # finished in an earlier invocation (e.g. SFT's phase 1): Trainer resumed at max_steps on a
            # stream without length would train one step more, so restore the weights without it
            return _load_finished_stage(model, checkpoint)
        if self.is_main:  # records past the checkpoint are recomputed; a fresh stage 1 starts an empty log
            done = checkpoint_step(checkpoint) if checkpoint else 0
            self.log.truncate_after(stage.step_offset + done if stage.step_offset or checkpoint else -1)
            if checkpoint is None and stage.step_offset == 0 and c.eval_corpus:
                self._eval_callback(stage.name, 0).evaluate(model, 0)  # step 0: quality of the initialisation
        dataset = PackedLMStream(self.tokenizer, c.corpus, self.objective, c.max_seq_length, seed=c.seed,
                                 alpha=c.corpus_alpha, replay_corpus=c.replay_corpus, replay_ratio=c.replay_ratio,
                                 start_block=stage.step_offset * self.global_batch, shuffle_buffer=c.shuffle_buffer)
        forward = inspect.signature(getattr(model, "get_base_model", lambda: model)().forward).parameters
        collator = PackedLMCollator(self.tokenizer, self.objective, c.mlm_probability, c.seed,
                                    position_ids="position_ids" in forward)
        callbacks = [MetricsCallback(self.log, stage.name, stage.step_offset), SealCheckpointCallback(),
                     LossCurveCallback(self.log), *extra_callbacks]
        if c.eval_corpus:
            callbacks.insert(1, self._eval_callback(stage.name, stage.step_offset))
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                          compute_loss_func=selected_rows_loss(self.objective), callbacks=callbacks,
                          processing_class=self.tokenizer)
        with SelectedRowsHead(model):
            try:
                result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            except OSError as exc:
                if not _is_disk_full(exc):
                    raise
                self._resume_checkpoint(stage)  # removes the half-written checkpoint
                raise UserError(f"disk full while writing to {self.out}: free space (or use another --out) "
                                "and rerun with --resume to continue from the last complete checkpoint") from exc
        self.train_seconds += result.metrics.get("train_runtime", 0.0)
        return {"train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
                "train_loss": round(result.metrics.get("train_loss", float("nan")), 4)}

    # ---------------------------------------------------------------- outputs

    def _save_model(self, model: Any, target: Path) -> None:
        """``save_pretrained`` model + tokenizer into a temp folder inside ``target``, then rename the files in.

        ``target`` may hold other files (``out`` holds logs and checkpoints), so the files are
        renamed one by one; a seal written last marks the set complete.
        """
        import tempfile

        from langgraft.adapt.callbacks import seal_checkpoint
        from langgraft.atomic import match_umask

        if self.is_main:
            inner = model.get_base_model() if hasattr(model, "get_base_model") else model
            target.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=target))
            try:
                inner.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
                match_umask(tmp)
                for path in tmp.iterdir():
                    os.replace(path, target / path.name)
                if target != self.out:
                    seal_checkpoint(target)
            except OSError as exc:
                if _is_disk_full(exc):
                    raise UserError(f"disk full while saving the model to {target}: free space and rerun "
                                    "with --resume") from exc
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        _wait_for_everyone()

    def _finish(self) -> None:
        from langgraft.adapt.callbacks import plot_loss_curve
        from langgraft.atomic import atomic_file

        if not self.is_main:
            return
        self.log.close()
        plot_loss_curve(self.log)
        record = json.loads((self.out / RUN_FILE).read_text(encoding="utf-8"))
        record.update(finished=True, config=asdict(self.config))
        with atomic_file(self.out / RUN_FILE) as handle:
            json.dump(record, handle, indent=2)


def pretrain(config: PretrainConfig, *, language_module: LanguageModuleStage | None = None,
             callbacks: Sequence[Any] = ()) -> PretrainResult:
    """Run (or with ``config.resume``, continue) continued pretraining; see the module docstring.

    ``callbacks``: extra ``TrainerCallback`` objects added to every stage's Trainer.

    ``language_module(model, fit)`` switches stage 2 to a language module: it receives the LM
    after stage 1 (embeddings trained, body otherwise untouched) and a ``fit(model,
    learning_rate, callbacks, phase) -> {"train_seconds", "train_loss"}`` that trains whatever is
    trainable in ``model`` for ``max_steps - embedding_steps`` steps on this run's packed stream,
    with this run's loss, checkpoints (resumable per phase), logging and held-out bpc
    (``config.learning_rate``, when set, overrides the ``learning_rate`` given to ``fit``). It must
    freeze the base itself, call ``fit`` once per phase and return the module;
    :attr:`PretrainResult.module` is the returned object (the caller saves it) and ``out`` holds
    the base model when stage 1 changed it. ``langgraft.adapters.compose.pretrain_language_module``
    does all this for the module kinds of :mod:`langgraft.adapters`.
    """
    return _Run(config, language_module, callbacks).run()
