"""Checkpoints read and written tensor by tensor, so vocabulary transfer never holds the whole model.

A Llama-3-8B checkpoint is 16 GB in bf16; the tensors a new tokenizer changes (input embeddings,
an untied head, an output bias) are 2.1 GB of it. This module finds those tensors' names without
loading any weight (the model is built on the ``meta`` device from its config), reads them alone
from a safetensors file or a sharded index (a byte range each, no memory map, so RSS is exactly
the tensors read), and writes a new checkpoint in which every other tensor is carried over byte
for byte: a shard without changed tensors is hard-linked (copied across filesystems), a shard that
mixes both is rewritten by a streaming safetensors writer whose memory does not grow with the
shard. Pickle checkpoints (``pytorch_model*.bin``) are read with ``torch.load(weights_only=True,
mmap=True)`` and written as safetensors.

Two tensor sources feed the transfer engine: :class:`CheckpointSource` (a directory, read lazily)
and :class:`ModelSource` (a model already in memory, the Python API's ``transfer(model, ...)``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import pickle
import re
import shutil
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

try:
    import fcntl  # reflinks (Linux); elsewhere untouched shards are hard-linked or copied
except ImportError:
    fcntl = None

from langgraft.errors import UserError
from langgraft.models import auto_class, head_kind, load_config, load_model, resolve_model_path

log = logging.getLogger(__name__)

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"

# safetensors dtype -> bits per element (the format's own table); anything else is refused by name
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
              "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64,
              "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
TORCH_DTYPES = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
                "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
                "F64": torch.float64, "C64": torch.complex64, "U16": torch.uint16, "U32": torch.uint32,
                "U64": torch.uint64, "F8_E5M2": torch.float8_e5m2, "F8_E4M3": torch.float8_e4m3fn}
SAFETENSORS_DTYPES = {dtype: name for name, dtype in TORCH_DTYPES.items()}
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # what embedding rows may be stored as
MAX_HEADER_BYTES = 100_000_000  # the format's own limit
COPY_CHUNK = 16 << 20  # bytes per read when carrying tensors over or hashing a file
ROLES = ("input", "head", "bias")


# --------------------------------------------------------------------------------------------
# safetensors headers, lazy reads and the streaming writer
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorEntry:
    """One stored tensor: where its bytes are (a safetensors file range), or the mmapped tensor (pickle)."""

    name: str
    dtype: str  # safetensors dtype name
    shape: tuple[int, ...]
    file: Path
    start: int = 0  # absolute byte offsets in ``file`` (safetensors only)
    end: int = 0
    tensor: torch.Tensor | None = field(default=None, compare=False, repr=False)  # pickle sources

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BITS[self.dtype] // 8


def read_header(path: Path) -> tuple[dict[str, str] | None, list[TensorEntry]]:
    """``(__metadata__, entries in data order)`` of a safetensors file, validated without reading any tensor."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
        if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
            raise UserError(f"{path}: not a safetensors file (bad header length); re-download or re-save the checkpoint")
        try:
            header = json.loads(handle.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: not a safetensors file (header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None)
    entries = []
    for name, spec in header.items():
        dtype = spec.get("dtype") if isinstance(spec, dict) else None
        if dtype not in DTYPE_BITS:
            raise UserError(f"{path}: tensor {name!r} has dtype {dtype!r}, which is not a safetensors dtype langgraft "
                            f"knows ({', '.join(DTYPE_BITS)}); re-save the checkpoint with a current safetensors")
        shape, offsets = spec.get("shape"), spec.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise UserError(f"{path}: tensor {name!r} has a malformed shape or data_offsets; the file is corrupt")
        entry = TensorEntry(name, dtype, tuple(shape), path, 8 + length + offsets[0], 8 + length + offsets[1])
        if entry.end - entry.start != entry.nbytes:
            raise UserError(f"{path}: tensor {name!r} holds {entry.end - entry.start} bytes but {dtype} "
                            f"{tuple(shape)} needs {entry.nbytes}; the file is corrupt")
        entries.append(entry)
    entries.sort(key=lambda e: (e.start, e.end))
    position = 8 + length
    for entry in entries:
        if entry.start != position:
            raise UserError(f"{path}: tensor {entry.name!r} does not start where the previous one ends; the file is corrupt")
        position = entry.end
    if position != size:
        raise UserError(f"{path}: {size} bytes on disk but the header describes {position}; the file is truncated "
                        "or corrupt, re-download it")
    return metadata, entries


def read_tensor(entry: TensorEntry) -> torch.Tensor:
    """The tensor's own bytes read into fresh memory (no memory map: RSS grows by exactly its size)."""
    if entry.tensor is not None:
        return entry.tensor
    if entry.dtype not in TORCH_DTYPES:
        raise UserError(f"{entry.file}: tensor {entry.name!r} is stored as {entry.dtype}, which torch cannot hold; "
                        "convert the checkpoint to bf16/fp16/fp32 first")
    buffer = torch.empty(entry.nbytes, dtype=torch.uint8)
    view = memoryview(buffer.numpy())
    with open(entry.file, "rb", buffering=0) as handle:
        handle.seek(entry.start)
        filled = 0
        while filled < entry.nbytes:  # one read returns at most ~2 GiB on Linux
            got = handle.readinto(view[filled:])
            if not got:
                raise UserError(f"{entry.file}: tensor {entry.name!r} is truncated; re-download the checkpoint")
            filled += got
    return buffer.view(TORCH_DTYPES[entry.dtype]).reshape(entry.shape)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The little-endian bytes of a tensor without a copy when it is already contiguous."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def write_safetensors(path: Path, tensors: Sequence[tuple[str, TensorEntry | torch.Tensor]],
                      metadata: dict[str, str] | None) -> dict[str, Any]:
    """Write ``(name, data)`` pairs in order, streaming; ``data`` is a stored entry (bytes copied) or a tensor.

    Memory stays at one copy buffer plus the tensors given; returns ``{"bytes", "sha256"}``.
    """
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, data in tensors:
        if isinstance(data, TensorEntry):
            dtype, shape, nbytes = data.dtype, list(data.shape), data.nbytes
            if data.tensor is not None:
                dtype = _safetensors_dtype(data.tensor, name)
        else:
            dtype, shape, nbytes = _safetensors_dtype(data, name), list(data.shape), data.numel() * data.element_size()
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # data starts 8-byte aligned, as the format's own writer does
    digest = hashlib.sha256()
    buffer = bytearray(COPY_CHUNK)
    with open(path, "wb") as out:
        def emit(chunk: bytes | memoryview) -> None:
            digest.update(chunk)
            out.write(chunk)

        emit(struct.pack("<Q", len(encoded)))
        emit(encoded)
        for _name, data in tensors:
            if isinstance(data, TensorEntry) and data.tensor is None:
                with open(data.file, "rb") as source:
                    source.seek(data.start)
                    left = data.nbytes
                    while left:
                        view = memoryview(buffer)[:min(left, COPY_CHUNK)]
                        got = source.readinto(view)
                        if not got:
                            raise UserError(f"{data.file}: tensor {data.name!r} is truncated; re-download the checkpoint")
                        emit(view[:got])
                        left -= got
            else:
                emit(tensor_bytes(data.tensor if isinstance(data, TensorEntry) else data))
        out.flush()
        os.fsync(out.fileno())
    return {"bytes": 8 + len(encoded) + offset, "sha256": digest.hexdigest()}


def _safetensors_dtype(tensor: torch.Tensor, name: str) -> str:
    if tensor.dtype not in SAFETENSORS_DTYPES:
        raise UserError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot store")
    return SAFETENSORS_DTYPES[tensor.dtype]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(COPY_CHUNK)
    with open(path, "rb") as handle:
        while got := handle.readinto(buffer):
            digest.update(memoryview(buffer)[:got])
    return digest.hexdigest()


FICLONE = 0x40049409  # Linux ioctl: share the data blocks copy-on-write (btrfs, xfs, ...)


def link_or_copy(source: Path, target: Path, copy: bool = False) -> str:
    """Carry an unchanged file over without copying its bytes when the filesystem allows; returns how.

    A copy-on-write clone (reflink) first, then a hard link (same filesystem; the two names then
    share one file, so the output must not be rewritten in place), else a byte copy. ``copy``
    skips both links.
    """
    if not copy and fcntl is not None:
        try:
            with open(source, "rb") as src, open(target, "wb") as dst:
                fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return "reflinked"
        except OSError:
            target.unlink(missing_ok=True)
    if not copy:
        try:
            os.link(source, target)
            return "hard-linked"
        except OSError:
            pass
    shutil.copyfile(source, target)
    return "copied"


# --------------------------------------------------------------------------------------------
# A checkpoint directory
# --------------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """A model directory's weight files, indexed by tensor name; tensors are read only on request."""

    path: Path
    files: dict[str, list[TensorEntry]]  # weight file name -> entries in data order
    metadata: dict[str, dict[str, str] | None]  # weight file name -> its safetensors __metadata__
    index: dict[str, Any] | None = None  # the parsed index of a sharded checkpoint
    pickled: bool = False  # pytorch_model*.bin: every file is converted to safetensors on write

    @classmethod
    def open(cls, name_or_path: str | os.PathLike) -> "Checkpoint":
        path = local_model_dir(name_or_path)
        if (path / SAFETENSORS_FILE).is_file():
            metadata, entries = read_header(path / SAFETENSORS_FILE)
            return cls(path, {SAFETENSORS_FILE: entries}, {SAFETENSORS_FILE: metadata})
        if (path / SAFETENSORS_INDEX).is_file():
            return cls._sharded(path, SAFETENSORS_INDEX, pickled=False)
        if (path / PICKLE_FILE).is_file():
            return cls(path, {PICKLE_FILE: _pickle_entries(path / PICKLE_FILE)}, {PICKLE_FILE: None}, pickled=True)
        if (path / PICKLE_INDEX).is_file():
            return cls._sharded(path, PICKLE_INDEX, pickled=True)
        raise UserError(f"{path}: no model weights ({SAFETENSORS_FILE}, {SAFETENSORS_INDEX} or {PICKLE_FILE}); "
                        "pass a model directory written by save_pretrained")

    @classmethod
    def _sharded(cls, path: Path, index_name: str, pickled: bool) -> "Checkpoint":
        index_path = path / index_name
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{index_path}: not a JSON index ({exc}); re-download or re-save the checkpoint") from None
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise UserError(f"{index_path}: no 'weight_map'; re-download or re-save the checkpoint")
        files, metadata = {}, {}
        for shard in sorted(set(weight_map.values())):
            if not isinstance(shard, str) or Path(shard).name != shard:
                raise UserError(f"{index_path}: shard name {shard!r} is not a plain file name; fix the index")
            if not (path / shard).is_file():
                raise UserError(f"{index_path}: names shard {shard}, which is missing from {path}; "
                                "re-download the checkpoint or fix the index")
            if pickled:
                files[shard], metadata[shard] = _pickle_entries(path / shard), None
            else:
                metadata[shard], files[shard] = read_header(path / shard)
        stored = {shard: {entry.name for entry in entries} for shard, entries in files.items()}
        for name, shard in weight_map.items():
            if name not in stored[shard]:
                raise UserError(f"{index_path}: says tensor {name!r} is in {shard}, but that shard has no such tensor; "
                                "re-download the checkpoint or fix the index")
        return cls(path, files, metadata, index, pickled)

    @cached_property
    def entries(self) -> dict[str, TensorEntry]:
        """Tensor name -> entry (for a sharded checkpoint, the shard the index names)."""
        by_name = {entry.name: entry for entries in self.files.values() for entry in entries}
        if self.index is not None:
            per_shard = {shard: {entry.name: entry for entry in entries} for shard, entries in self.files.items()}
            by_name.update({name: per_shard[shard][name] for name, shard in self.index["weight_map"].items()})
        return by_name

    def read(self, name: str) -> torch.Tensor:
        return read_tensor(self.entries[name])

    def write(self, out: Path, replacements: dict[str, torch.Tensor],
              copy_untouched: bool = False) -> dict[str, dict[str, Any]]:
        """Write every weight file (and the index) into directory ``out`` with ``replacements`` swapped in.

        Files without a replaced tensor are carried over by :func:`link_or_copy` (``copy_untouched``:
        always as bytes); the others are rewritten tensor by tensor. Returns
        ``file -> {"bytes", "sha256", "written"}``.
        """
        unknown = set(replacements) - set(self.entries)
        if unknown:
            raise ValueError(f"replacements for tensors the checkpoint does not hold: {sorted(unknown)}")
        written: dict[str, dict[str, Any]] = {}
        renamed = {name: _safetensors_name(name) if self.pickled else name for name in self.files}
        for name, entries in self.files.items():
            target = out / renamed[name]
            if self.pickled or any(entry.name in replacements for entry in entries):
                pairs = [(entry.name, replacements.get(entry.name, entry)) for entry in entries]
                written[renamed[name]] = {**write_safetensors(target, pairs, self.metadata[name] or {"format": "pt"}),
                                          "written": "rewritten"}
            else:
                how = link_or_copy(self.path / name, target, copy_untouched)
                written[renamed[name]] = {"bytes": target.stat().st_size, "sha256": file_sha256(target), "written": how}
        if self.index is not None:
            sizes = {entry.name: entry.nbytes for entry in self.entries.values()}
            sizes.update({name: tensor.numel() * tensor.element_size() for name, tensor in replacements.items()})
            index = {**self.index, "metadata": {**(self.index.get("metadata") or {}), "total_size": sum(sizes.values())},
                     "weight_map": {name: renamed[shard] for name, shard in self.index["weight_map"].items()}}
            (out / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return written


def _safetensors_name(pickle_name: str) -> str:
    """``pytorch_model-00001-of-00002.bin`` -> ``model-00001-of-00002.safetensors``."""
    return re.sub(r"^pytorch_model", "model", pickle_name).removesuffix(".bin") + ".safetensors"


def _pickle_entries(path: Path) -> list[TensorEntry]:
    """A pickle state dict loaded safely (``weights_only=True``), memory-mapped when the format allows."""
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: pickle weights that cannot be loaded safely (torch.load weights_only=True: {first}); "
                        "convert the checkpoint to safetensors with the tool that wrote it") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UserError(f"{path}: not a state dict of tensors; convert the checkpoint to safetensors")
    for name, tensor in state.items():
        _safetensors_dtype(tensor, name)
    return [TensorEntry(name, SAFETENSORS_DTYPES[tensor.dtype], tuple(tensor.shape), path, tensor=tensor)
            for name, tensor in state.items()]


def local_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A local directory for a model: the path, an installed alias, or a hub snapshot (needs a network or cache)."""
    resolved = resolve_model_path(name_or_path)
    if Path(resolved).is_dir():
        return Path(resolved)
    if Path(resolved).exists():
        raise UserError(f"{resolved}: is a file; pass the model directory")
    try:  # deferred: keeps huggingface_hub off `import langgraft.vocab.checkpoint` (local paths never need it)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(resolved)))
    except Exception as exc:  # offline, unknown repo, gated repo: all mean "no local model"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot find model {str(name_or_path)!r}: not a local directory and not downloadable "
                        f"({first}); give a local model directory, or a hub name when online") from None


# --------------------------------------------------------------------------------------------
# Which stored tensors are vocabulary-indexed
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VocabTensors:
    """Checkpoint keys of the vocabulary-indexed tensors; several keys may hold one tensor (aliases)."""

    input: tuple[str, ...]  # the input embeddings (and a tied head's key, when the checkpoint stores it)
    head: tuple[str, ...] = ()  # an untied output embedding matrix
    bias: tuple[str, ...] = ()  # the output bias

    @property
    def tied(self) -> bool:
        return not self.head

    def keys(self, role: str) -> tuple[str, ...]:
        return getattr(self, role)


def meta_model(config: Any, kind: str | None) -> Any:
    """The model class's structure on the ``meta`` device: names and shapes, no memory, no weights."""
    # deferred: keeps transformers and huggingface_hub off `import langgraft.vocab.checkpoint`
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.device("meta"):
            return auto_class(kind).from_config(config)
    except (ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot build model type {config.model_type!r} from its config ({first}); "
                        "langgraft handles model types that transformers knows") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def find_vocab_tensors(config: Any, kind: str | None, stored: Iterable[str]) -> VocabTensors | None:
    """Map the model's input/output embeddings and output bias to stored keys; ``None`` if they cannot be found.

    Names come from the model built on ``meta`` (every alias of a shared parameter), matched to
    the stored keys as they are, without the base-model prefix (a body saved by ``AutoModel``), or
    with it.
    """
    model = meta_model(config, kind)
    stored = set(stored)
    prefix = model.base_model_prefix

    def keys_of(parameter: Any) -> tuple[str, ...]:
        names = [n for n, p in model.named_parameters(remove_duplicate=False) if p is parameter]
        found = []
        for name in names:
            for candidate in (name, name.removeprefix(f"{prefix}."), f"{prefix}.{name}"):
                if candidate in stored and candidate not in found:
                    found.append(candidate)
                    break
        return tuple(found)

    embeddings = model.get_input_embeddings()
    output = model.get_output_embeddings()
    inputs = keys_of(embeddings.weight)
    if not inputs:
        return None
    head = () if output is None or output.weight is embeddings.weight else keys_of(output.weight)
    bias = getattr(output, "bias", None) if output is not None else None
    return VocabTensors(inputs, head, keys_of(bias) if isinstance(bias, torch.nn.Parameter) else ())


# --------------------------------------------------------------------------------------------
# Tensor sources for the transfer engine
# --------------------------------------------------------------------------------------------
class CheckpointSource:
    """A source checkpoint on disk: config, head kind and the vocabulary tensors, each read when asked for."""

    loads_model = ""  # why the whole model was loaded: never

    def __init__(self, checkpoint: Checkpoint, config: Any, vocab: VocabTensors):
        self.checkpoint, self.config, self.vocab = checkpoint, config, vocab
        self.kind = head_kind(config)
        self.name = str(checkpoint.path)
        entries = checkpoint.entries
        for role in ROLES:
            for key in vocab.keys(role):
                if entries[key].dtype not in FLOAT_DTYPES:
                    raise UserError(f"{checkpoint.path}: {key} is stored as {entries[key].dtype}; langgraft writes "
                                    f"embeddings as {'/'.join(FLOAT_DTYPES)} only, dequantize the checkpoint first")
        self.shape = entries[vocab.input[0]].shape

    def has(self, role: str) -> bool:
        return bool(self.vocab.keys(role))

    def dtype(self, role: str) -> torch.dtype:
        return TORCH_DTYPES[self.checkpoint.entries[self.vocab.keys(role)[0]].dtype]

    def read(self, role: str) -> torch.Tensor:
        return self.checkpoint.read(self.vocab.keys(role)[0])

    def generation_config(self, config: Any, tokenizer: Any) -> Any | None:
        """The stored generation config with ``tokenizer``'s special ids (a causal LM without one gets the default)."""
        # deferred: keeps transformers and huggingface_hub off `import langgraft.vocab.checkpoint`
        from transformers import GenerationConfig

        if (self.checkpoint.path / "generation_config.json").is_file():
            generation = GenerationConfig.from_pretrained(self.checkpoint.path)
        elif self.kind == "clm":
            generation = GenerationConfig.from_model_config(config)
        else:
            return None
        set_special_ids(generation, tokenizer)
        return generation

    def write(self, out: Path, tables: dict[str, torch.Tensor], config: Any, generation_config: Any | None,
              copy_untouched: bool = False) -> dict[str, dict[str, Any]]:
        """The checkpoint with each role's table under all its keys (in the stored dtype), plus the configs."""
        replacements = {key: table.to(self.dtype(role)) for role, table in tables.items() for key in self.vocab.keys(role)}
        files = self.checkpoint.write(out, replacements, copy_untouched)
        config.save_pretrained(out)
        if generation_config is not None:
            generation_config.save_pretrained(out)
        return files


def set_special_ids(config: Any, tokenizer: Any) -> None:
    """A config's (or generation config's) special ids follow ``tokenizer`` (None where it has none)."""
    for role in ("pad", "bos", "eos"):
        attribute = f"{role}_token_id"
        if hasattr(config, attribute) or getattr(tokenizer, attribute, None) is not None:
            setattr(config, attribute, getattr(tokenizer, attribute, None))
    if hasattr(config, "sep_token_id"):
        config.sep_token_id = getattr(tokenizer, "sep_token_id", None)


def output_config(config: Any, rows: int, tokenizer: Any) -> Any:
    """A copy of ``config`` for a vocabulary of ``rows`` embedding rows and ``tokenizer``'s special ids."""
    config = copy.deepcopy(config)
    config.get_text_config().vocab_size = rows
    set_special_ids(config, tokenizer)
    return config


class ModelSource:
    """A model already in memory (the Python API): its vocabulary tensors are its parameters."""

    def __init__(self, model: Any, why: str = "source given as a loaded model"):
        self.model, self.config, self.loads_model = model, model.config, why
        self.kind = head_kind(model.config)
        self.name = getattr(model, "name_or_path", "") or type(model).__name__
        embeddings, output = model.get_input_embeddings(), model.get_output_embeddings()
        untied = output is not None and output.weight is not embeddings.weight \
            and output.weight.data_ptr() != embeddings.weight.data_ptr()
        bias = getattr(output, "bias", None) if output is not None else None
        self.parameters = {"input": embeddings.weight, "head": output.weight if untied else None,
                           "bias": bias if isinstance(bias, torch.Tensor) else None}
        self.shape = tuple(embeddings.weight.shape)

    def has(self, role: str) -> bool:
        return self.parameters[role] is not None

    def dtype(self, role: str) -> torch.dtype:
        return self.parameters[role].dtype

    def read(self, role: str) -> torch.Tensor:
        return self.parameters[role].detach()


def open_source(name_or_path: str | os.PathLike, what: str = "model") -> CheckpointSource | ModelSource:
    """A lazy :class:`CheckpointSource`, or — when the stored names cannot be matched to the model's
    embeddings (legacy key names) — the model loaded whole through transformers (logged)."""
    checkpoint = Checkpoint.open(name_or_path)
    config = load_config(checkpoint.path)
    kind = head_kind(config)
    vocab = find_vocab_tensors(config, kind, checkpoint.entries)
    if vocab is not None:
        return CheckpointSource(checkpoint, config, vocab)
    why = f"the stored tensor names do not match the {config.model_type} model's embeddings"
    log.warning("%s: %s; loading the whole %s", checkpoint.path, why, what)
    return ModelSource(load_model(checkpoint.path, auto_class(kind)), why)


def read_input_embeddings(name_or_path: str | os.PathLike) -> tuple[torch.Tensor, bool]:
    """A model's input-embedding matrix, read alone when the checkpoint allows; ``(matrix, whole model loaded)``."""
    source = open_source(name_or_path, what="helper model")
    return source.read("input"), bool(source.loads_model)


__all__ = ["Checkpoint", "CheckpointSource", "ModelSource", "TensorEntry", "VocabTensors", "find_vocab_tensors",
           "output_config", "set_special_ids",
           "open_source", "read_header", "read_input_embeddings", "read_tensor", "write_safetensors", "file_sha256",
           "local_model_dir", "meta_model", "ROLES", "SAFETENSORS_FILE", "SAFETENSORS_INDEX"]
