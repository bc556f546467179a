"""Correct mixed precision for checkpoints stored in bf16/fp16, and the devices that can run it.

Pure low-precision AdamW (bf16 weights updated in place) loses every update smaller than about
2^-8 of a weight: at the learning rates of continued pretraining most updates vanish silently.
So langgraft always keeps **fp32 master weights for what trains**:

- without ``bf16``/``fp16`` the model is loaded in fp32 (a bf16 checkpoint is upcast), trained in
  fp32 and saved back in its own dtype;
- with ``bf16`` (or ``fp16``) a low-precision checkpoint keeps its *frozen* weights in that dtype
  (the memory saving), its trainable parameters are upcast to fp32 before the optimizer is built,
  compute runs under autocast (Trainer's ``bf16``/``fp16``), and the trained model is cast back to
  the checkpoint's dtype when saved.

Trainer checkpoints hold the fp32 master weights, so a resumed run continues exactly.
"""
from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import torch

from langgraft.errors import UserError

LOW_PRECISION = (torch.bfloat16, torch.float16)
logger = logging.getLogger("langgraft.training")


def checkpoint_dtype(config: Any) -> torch.dtype:
    """The dtype a checkpoint's weights are stored in (its config's ``dtype``; fp32 when unset)."""
    dtype = getattr(config, "dtype", None)  # transformers >= 5: reading ``torch_dtype`` only warns it is deprecated
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def load_dtype(options: Any, config: Any) -> torch.dtype:
    """What ``from_pretrained`` gets: a low-precision checkpoint stays so under ``bf16``/``fp16`` and becomes
    fp32 without them; fp32 and fp64 checkpoints load as they are."""
    stored = checkpoint_dtype(config)
    return torch.float32 if stored in LOW_PRECISION and not (options.bf16 or options.fp16) else stored


def upcast_trainable(model: Any) -> list[str]:
    """fp32 master weights: every trainable low-precision parameter becomes fp32 (in place); their names."""
    upcast = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and parameter.dtype in LOW_PRECISION:
            parameter.data = parameter.data.float()
            upcast.append(name)
    return upcast


def keeps_fp32(model: Any, name: str) -> bool:
    """Parameters transformers keeps in fp32 even in a low-precision checkpoint (``_keep_in_fp32_modules``)."""
    patterns = getattr(model, "_keep_in_fp32_modules", None) or []
    return any(re.search(rf"(^|\.){re.escape(p)}(\.|$)", name) for p in patterns)


def cast_to(model: Any, dtype: torch.dtype) -> None:
    """Cast floating parameters and buffers to the checkpoint's ``dtype`` before saving (in place)."""
    if dtype == torch.float32:
        return
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and tensor.dtype != dtype and not keeps_fp32(model, name):
            tensor.data = tensor.data.to(dtype)
    model.config.dtype = dtype


def cast_state_dict(model: Any, state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """:func:`cast_to` for a gathered state dict (FSDP/DeepSpeed save)."""
    if dtype == torch.float32:
        return state
    return {name: t.to(dtype) if t.is_floating_point() and not keeps_fp32(model, name) else t
            for name, t in state.items()}


def autocast(args: Any) -> Any:
    """The autocast context of a Trainer run (``TrainingArguments`` ``bf16``/``fp16``), for work outside its
    training step that runs the model with mixed-dtype weights (held-out evaluation in a callback)."""

    if not (args.bf16 or args.fp16):
        return contextlib.nullcontext()
    return torch.autocast(device_type=args.device.type, dtype=torch.bfloat16 if args.bf16 else torch.float16)


def on_gpu() -> bool:
    return torch.cuda.is_available()


def has_accelerator() -> bool:
    """Any accelerator torch can train on (CUDA, Apple MPS, Intel XPU). The one device check.

    Without one, Trainer is told ``use_cpu`` (then multi-process runs use gloo) and data loaders do
    not pin memory.
    """
    return torch.cuda.is_available() or torch.backends.mps.is_available() or (
        hasattr(torch, "xpu") and torch.xpu.is_available())


def bf16_supported(on_cpu: bool) -> bool:
    """Can this device compute in bf16? (GPUs: the device says; CPUs: a bf16 matmul runs.)"""
    if not on_cpu and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        probe = torch.ones(2, 2, dtype=torch.bfloat16)
        return bool((probe @ probe).float().sum() == 8)
    except RuntimeError:
        return False


def native_cpu_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 compute in hardware (elsewhere torch emulates it, slower than fp32)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(options: Any) -> None:
    """Refuse precision settings this machine cannot run (one line each); note emulated bf16."""
    on_cpu = options.use_cpu or not has_accelerator()
    if options.fp16 and on_cpu:
        raise UserError("--fp16 needs a GPU (mixed fp16 with loss scaling); on a CPU use --bf16, or no flag for fp32")
    if options.bf16 and not bf16_supported(on_cpu):
        device = "this CPU" if on_cpu else "this GPU"
        raise UserError(f"--bf16: {device} cannot compute in bfloat16; drop --bf16 (fp32 training) "
                        "or use a device with bf16 (Ampere+ GPU, CPU with AVX512-BF16/AMX)")
    if options.bf16 and on_cpu and not native_cpu_bf16():
        logger.warning("note: this CPU has no native bf16 (AVX512-BF16/AMX); bf16 is emulated and slower than fp32")
