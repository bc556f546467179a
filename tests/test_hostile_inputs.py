"""Hostile and broken inputs across the commands: one line, exit status 2, nothing written, nothing changed.

Each case builds its inputs under ``tmp_path``; the test snapshots every file there (bytes) before
the command and compares after, so "nothing half-written, nothing pre-existing changed" is checked
the same way for every case.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Callable

import pytest
import torch

from langgraft.adapt.cli import build_parser, main


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (and '<dir>' for every folder) under ``root``."""
    state = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        state[key] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def run_refused(argv: list[str], root: Path, pattern: str, capsys) -> str:
    """Run the CLI in-process; assert one ``langgraft: error:`` line matching ``pattern``, exit 2, ``root`` untouched."""
    before = snapshot(root)
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own exit
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("langgraft: error:"), err
    assert "Traceback" not in err and re.search(pattern, err), err
    assert snapshot(root) == before, "the command wrote or changed files"
    return err


def lines_file(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def copied_model(source: Path, out: Path) -> Path:
    shutil.copytree(source, out)
    return out


def pickle_only_model(source: Path, out: Path) -> Path:
    """The tiny model with its weights as a pickle that holds more than tensors (weights_only refuses it)."""
    shutil.copytree(source, out)
    for weights in out.glob("*.safetensors"):
        weights.unlink()
    torch.save({"note": datetime.date(2024, 5, 1)}, out / "pytorch_model.bin")
    return out


# ----------------------------------------------------------------------------- numbers

NUMBER_CASES = {
    "vocab size written as a float": (["--vocab-size", "1e20"], "--vocab-size.*integer"),
    "vocab size past the largest vocabulary": (["--vocab-size", "5000000000"], "--vocab-size must be .*<= 4194304"),
    "negative minimum frequency": (["--vocab-size", "500", "--min-frequency", "-1"], "--min-frequency must be >= 0"),
}


@pytest.mark.parametrize("case", NUMBER_CASES, ids=list(NUMBER_CASES))
def test_tokenizer_numbers_out_of_range_are_refused_up_front(case, tiny_models, target_corpus, tmp_path, capsys):
    extra, pattern = NUMBER_CASES[case]
    run_refused(["tokenizer", "train", "--source", tiny_models["bert"], "--corpus", target_corpus,
                 "--out", tmp_path / "tok", *extra], tmp_path, pattern, capsys)


def test_split_ratios_must_be_finite(target_corpus, tmp_path, capsys):
    run_refused(["corpus", "prepare", target_corpus, "--out", tmp_path / "c", "--ratios", "nan", "0", "0"],
                tmp_path, "ratio", capsys)


PRETRAIN_OPTION_CASES = {
    "unknown scheduler": (["--lr-scheduler-type", "bogus"], "lr-scheduler-type.*bogus"),
    "masking probability above one": (["--mlm-probability", "1.5"], "--mlm-probability must be > 0 and < 1"),
    "replay ratio without a replay corpus": (["--replay-ratio", "0.5"], "--replay-ratio needs --replay-corpus"),
    "resume and overwrite together": (["--resume", "--overwrite"], "choose one"),
}


@pytest.mark.parametrize("case", PRETRAIN_OPTION_CASES, ids=list(PRETRAIN_OPTION_CASES))
def test_pretrain_bad_options_write_nothing(case, tiny_models, target_corpus, tmp_path, capsys):
    extra, pattern = PRETRAIN_OPTION_CASES[case]
    run_refused(["pretrain", "--model", tiny_models["bert"], "--corpus", target_corpus, "--out", tmp_path / "run",
                 "--max-steps", "2", "--max-seq-length", "32", *extra], tmp_path, pattern, capsys)


def test_a_corpus_shorter_than_one_sequence_leaves_out_free_for_the_corrected_rerun(tiny_models, tmp_path, capsys):
    short = lines_file(tmp_path / "short.txt", ["tiny"])
    run_refused(["pretrain", "--model", tiny_models["bert"], "--corpus", short, "--out", tmp_path / "run",
                 "--max-steps", "2", "--max-seq-length", "64"], tmp_path, "fewer than one sequence", capsys)
    assert not (tmp_path / "run").exists()


def test_bpc_advice_fits_the_cause(tiny_models, target_corpus, tmp_path, capsys):
    for extra, pattern in ((["--max-length", "1"], "--max-length"), (["--batch-size", "0"], "--batch-size")):
        err = run_refused(["eval", "bpc", "--model", tiny_models["bert"], "--corpus", target_corpus, *extra],
                          tmp_path, pattern, capsys)
        assert "more text" not in err and "--mask-rate" not in err


# ----------------------------------------------------------------------------- sidecar files

CORRUPT_SIDECARS = {"truncated": "{\"original_vocab_size\": ", "empty object": "{}", "a list": "[1, 2]",
                    "wrong type": "{\"original_vocab_size\": \"many\", \"new_vocab_size\": 3}"}


@pytest.mark.parametrize("content", CORRUPT_SIDECARS.values(), ids=list(CORRUPT_SIDECARS))
def test_a_corrupt_extension_record_names_the_file(content, tiny_models, extended_tokenizers, tmp_path, capsys):
    tokenizer = copied_model(extended_tokenizers["bert"], tmp_path / "tok")
    (tokenizer / "langgraft_extension.json").write_text(content, encoding="utf-8")
    run_refused(["init", "--source", tiny_models["bert"], "--tokenizer", tokenizer, "--method", "mean",
                 "--mode", "extend", "--out", tmp_path / "out"], tmp_path, r"langgraft_extension\.json", capsys)


@pytest.mark.parametrize("content", ["{", "{}", "[]"], ids=["truncated", "empty object", "a list"])
def test_a_corrupt_pretraining_record_names_the_file_on_resume(content, tiny_models, target_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "langgraft_pretrain.json").write_text(content, encoding="utf-8")
    run_refused(["pretrain", "--model", tiny_models["bert"], "--corpus", target_corpus, "--out", run,
                 "--max-steps", "2", "--max-seq-length", "32", "--resume"], tmp_path, r"langgraft_pretrain\.json",
                capsys)


def test_a_corrupt_fasttext_record_names_the_file(tiny_models, target_tokenizers, tmp_path, capsys):
    vectors = tmp_path / "en.bin"
    vectors.write_bytes(b"not read: the record beside it is read first")
    (tmp_path / "en.bin.json").write_text("{\"options\": []}", encoding="utf-8")
    run_refused(["init", "--source", tiny_models["bert"], "--tokenizer", target_tokenizers["bert"],
                 "--method", "wechsel", "--source-embeddings", vectors, "--target-embeddings", vectors,
                 "--dictionary", lines_file(tmp_path / "dict.tsv", ["a\tb"]), "--out", tmp_path / "out"],
                tmp_path, r"en\.bin\.json", capsys)


def test_a_corrupt_module_record_names_the_file(tiny_models, tmp_path, capsys):
    module = tmp_path / "module"
    module.mkdir()
    (module / "langgraft_module.json").write_text("{\"kind\": ", encoding="utf-8")
    run_refused(["module", "compose", "--base", tiny_models["bert"], "--modules", module, "--out", tmp_path / "out"],
                tmp_path, r"langgraft_module\.json", capsys)


def test_a_corrupt_run_record_names_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.json").write_text("[]", encoding="utf-8")
    run_refused(["publish", run, "--out", tmp_path / "published"], tmp_path, r"pipeline\.json", capsys)


# ----------------------------------------------------------------------------- files and outputs

@pytest.mark.parametrize("token_id", ["abc", "1-", "0", "1.x"])
def test_conllu_token_ids_that_are_not_ids_name_the_line(token_id, tmp_path, capsys):
    conllu = tmp_path / "t.conllu"
    conllu.write_text("# sent_id = 1\n1\tA\ta\tX\t_\t_\t0\troot\t_\t_\n"
                      f"{token_id}\tB\tb\tX\t_\t_\t1\tdep\t_\t_\n\n", encoding="utf-8")
    run_refused(["corpus", "prepare", conllu, "--out", tmp_path / "c"], tmp_path, r"t\.conllu:3: .*token id", capsys)


@pytest.mark.parametrize("where", ["/proc/langgraft-out", "a_file/sub"])
def test_an_output_that_cannot_be_made_is_refused_before_the_work(where, target_corpus, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    run_refused(["corpus", "prepare", target_corpus, "--out", where], tmp_path, "--out", capsys)


def test_eval_out_that_is_a_folder_is_refused_before_evaluating(tiny_models, target_corpus, tmp_path, capsys):
    (tmp_path / "results").mkdir()
    run_refused(["eval", "--model", tiny_models["bert"], "--task", f"bpc={target_corpus}", "--out",
                 tmp_path / "results"], tmp_path, "is a folder", capsys)


@pytest.mark.parametrize("command", ["pretrain", "init"])
def test_pickle_weights_that_are_not_plain_tensors_get_one_line(command, tiny_models, target_tokenizers,
                                                                target_corpus, tmp_path, capsys):
    model = pickle_only_model(tiny_models["bert"], tmp_path / "pickled")
    argv = {"pretrain": ["pretrain", "--model", model, "--corpus", target_corpus, "--max-steps", "1",
                         "--max-seq-length", "32"],
            "init": ["init", "--source", model, "--tokenizer", target_tokenizers["bert"], "--method", "mean"]}[command]
    run_refused([*argv, "--out", tmp_path / "out"], tmp_path, "safetensors", capsys)


# ----------------------------------------------------------------------------- pipeline files

PIPELINE_CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "not UTF-8": (lambda d: [_file(d / "p.yaml", b"language: \xff\xfe\n")], "UTF-8"),
    "a folder as the file": (lambda d: [str(_folder(d / "p.yaml"))], "folder"),
    "an unclosed --set list": (lambda d: [_file(d / "p.yaml", b"language: nya\n"), "--set", "seed=[unclosed"],
                               "--set"),
    "--set on an empty file": (lambda d: [_file(d / "p.yaml", b""), "--set", "seed=1"], "missing key"),
    "a name that climbs out of output": (lambda d: [_file(d / "p.yaml", b"language: nya\nsource_model: m\n"
                                                    b"name: ../../x\n")], "name"),
    "an absolute name": (lambda d: [_file(d / "p.yaml", b"language: nya\nsource_model: m\nname: /tmp/x\n")], "name"),
    "NaN split ratios": (lambda d: [_file(d / "p.yaml", b"language: nya\nsource_model: m\n"
                                    b"corpora: {ratios: [.nan, 0.1, 0.1]}\n")], "ratio"),
    "options of a method that takes none": (lambda d: [_file(d / "p.yaml", b"language: nya\nsource_model: m\n"
                                                         b"init: {method: random, options: {random: 5}}\n")],
                                            "init.options"),
    "an alias bomb": (lambda d: [_file(d / "p.yaml", b"a: &a [x, x, x, x, x, x, x, x, x]\n"
                                 b"b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                 b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n")], "alias"),
}


def _file(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("case", PIPELINE_CASES, ids=list(PIPELINE_CASES))
def test_hostile_pipeline_files(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build, pattern = PIPELINE_CASES[case]
    run_refused(["run", *build(tmp_path)], tmp_path, pattern, capsys)


# ----------------------------------------------------------------------------- every --out

def commands_with_out() -> dict[str, argparse.ArgumentParser]:
    """``"tokenizer train"`` -> its parser, for every command that takes ``--out``."""
    found = {}

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
        if any("--out" in action.option_strings for action in parser._actions):
            found[" ".join(path)] = parser

    walk(build_parser(), [])
    return found


def existing_out_argv(command: str, models: dict[str, Path], corpus: Path, tokenizers: dict[str, Path],
                      tmp: Path) -> list[str]:
    """The least a command needs to reach its output check (inputs exist; they are never read)."""
    model, tok = models["bert"], tokenizers["bert"]
    text = lines_file(tmp / "in.txt", ["a line"])
    return {
        "corpus prepare": [text],
        "tokenizer train": ["--source", model, "--corpus", text, "--vocab-size", "500"],
        "tokenizer extend": ["--source", model, "--corpus", text, "--new-tokens", "5"],
        "init": ["--source", model, "--tokenizer", tok, "--method", "mean"],
        "ofa export": ["--model", model],
        "hydra add": ["--model", model, "--language", "nya"],
        "hydra export": ["--model", model, "--table", tok],
        "resources fasttext": ["--corpus", text],
        "resources dictionary": ["--from", text],
        "resources align": ["--parallel", text, text, "--source-tokenizer", tok, "--target-tokenizer", tok],
        "head recover": ["--model", model, "--corpus", corpus],
        "pretrain": ["--model", model, "--corpus", corpus, "--max-steps", "1", "--max-seq-length", "32"],
        "module train-language": ["--kind", "lora", "--model", model, "--corpus", corpus, "--language", "nya"],
        "module train-task": ["--kind", "lora", "--model", model, "--train", text, "--task", "seq-cls"],
        "module compose": ["--base", model, "--modules", tok],
        "eval": ["--model", model, "--task", f"bpc={corpus}"],
        "eval report": [text],
        "demo": [],
        "publish": [_folder_with(tmp / "run", "pipeline.json")],
        "distill": ["--model", _init_output(tmp / "init", model), "--corpus", text],
    }[command]


def _folder_with(folder: Path, name: str) -> Path:
    folder.mkdir()
    (folder / name).write_text("{}", encoding="utf-8")
    return folder


def _init_output(folder: Path, source: Path) -> Path:
    """A folder with the transfer summary `langgraft init` writes (what `distill` reads before its output check)."""
    folder.mkdir()
    (folder / "transfer_summary.json").write_text(json.dumps({"mode": "extend", "source_vocab_size": 10,
                                                              "source": str(source)}), encoding="utf-8")
    return folder


def test_the_table_below_covers_every_command_with_out():
    assert set(commands_with_out()) == set(COMMANDS_WITH_OUT)


FILE_OUTPUTS = ("eval", "resources fasttext", "resources align", "resources dictionary")  # one file, not a folder
COMMANDS_WITH_OUT = ("corpus prepare", "tokenizer train", "tokenizer extend", "init", "ofa export", "hydra add",
                     "hydra export", "resources fasttext", "resources dictionary", "resources align", "head recover",
                     "pretrain", "module train-language", "module train-task", "module compose", "eval",
                     "eval report", "demo", "publish", "distill")


@pytest.mark.parametrize("command", COMMANDS_WITH_OUT)
def test_every_command_refuses_an_existing_out_unless_overwrite(command, tiny_models, target_corpus,
                                                                target_tokenizers, tmp_path, capsys):
    assert "--overwrite" in commands_with_out()[command].format_help()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("the user's file", encoding="utf-8")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    argv = existing_out_argv(command, tiny_models, target_corpus, target_tokenizers, inputs)
    if command in FILE_OUTPUTS:  # an existing file is what these refuse
        out = tmp_path / "result"
        out.write_text("the user's file", encoding="utf-8")
    run_refused([*command.split(), *argv, "--out", out], tmp_path, "already exists", capsys)


# ----------------------------------------------------------------------------- run records and checkpoints

def test_a_run_record_without_stages_names_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.json").write_text(json.dumps({"name": "x", "config": {}}), encoding="utf-8")
    run_refused(["publish", run, "--out", tmp_path / "published"], tmp_path, r"pipeline\.json.* has no 'stages'",
                capsys)


@pytest.fixture(scope="module")
def checkpointed_run(tiny_models, target_corpus, tmp_path_factory) -> Path:
    """A finished 2-step pretraining run that kept its checkpoints (one per step)."""
    out = tmp_path_factory.mktemp("checkpointed") / "run"
    assert main(["pretrain", "--model", str(tiny_models["bert"]), "--corpus", str(target_corpus), "--out", str(out),
                 "--max-steps", "2", "--embedding-steps", "1", "--max-seq-length", "32", "--save-steps", "1",
                 "--per-device-train-batch-size", "2", "--use-cpu", "--report-to", "none"]) == 0
    return out


def _poisoned(path: Path, how: str) -> None:
    if how == "pickle":  # a global weights_only refuses
        torch.save({"note": datetime.date(2024, 5, 1)}, path)
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "missing":
        path.unlink()
    else:
        path.write_bytes({"empty": b"", "a list": b"[1, 2]", "an empty object": b"{}",
                          "a log entry that is no object": b'{"global_step": 1, "max_steps": 2, "train_batch_size": 2,'
                                                           b' "log_history": [3]}',
                          "a field Trainer does not know": b'{"global_step": 1, "max_steps": 2, "train_batch_size": 2,'
                                                           b' "log_history": [], "bogus": 1}'}[how])


CHECKPOINT_CASES = {  # file in the checkpoint, what is done to it, what the line says
    "rng_state.pth a pickle": ("rng_state.pth", "pickle", r"rng_state\.pth.*weights_only"),
    "rng_state.pth truncated": ("rng_state.pth", "truncated", r"rng_state\.pth.*damaged"),
    "optimizer.pt a pickle": ("optimizer.pt", "pickle", r"optimizer\.pt.*weights_only"),
    "optimizer.pt empty": ("optimizer.pt", "empty", r"optimizer\.pt.*damaged"),
    "scheduler.pt a pickle": ("scheduler.pt", "pickle", r"scheduler\.pt.*weights_only"),
    "scheduler.pt truncated": ("scheduler.pt", "truncated", r"scheduler\.pt.*damaged"),
    "scheduler.pt empty": ("scheduler.pt", "empty", r"scheduler\.pt.*damaged"),
    "trainer_state.json truncated": ("trainer_state.json", "truncated", r"trainer_state\.json.*not valid JSON"),
    "trainer_state.json empty": ("trainer_state.json", "empty", r"trainer_state\.json.*not valid JSON"),
    "trainer_state.json a list": ("trainer_state.json", "a list", r"trainer_state\.json.*JSON object"),
    "trainer_state.json an empty object": ("trainer_state.json", "an empty object", r"has no 'global_step'"),
    "trainer_state.json a pickle": ("trainer_state.json", "pickle", r"trainer_state\.json.*not UTF-8"),
    "trainer_state.json a log entry that is no object": ("trainer_state.json", "a log entry that is no object",
                                                         r"'log_history' entry"),
    "trainer_state.json a field Trainer does not know": ("trainer_state.json", "a field Trainer does not know",
                                                         r"trainer_state\.json.*bogus"),
    "trainer_state.json missing": ("trainer_state.json", "missing", r"no trainer_state\.json"),
    "model.safetensors truncated": ("model.safetensors", "truncated", r"model\.safetensors: damaged weights"),
    "model.safetensors missing": ("model.safetensors", "missing", r"checkpoint-1 holds no model weights"),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=list(CHECKPOINT_CASES))
def test_a_damaged_sealed_checkpoint_gets_one_line_on_resume(case, checkpointed_run, tiny_models, target_corpus,
                                                             tmp_path, capsys):
    """Sealed after the damage: the seal's sizes match, only the content is hostile (Trainer would fail mid-train)."""
    from langgraft.training.checkpoints import seal_checkpoint

    name, how, pattern = CHECKPOINT_CASES[case]
    run = shutil.copytree(checkpointed_run, tmp_path / "run")
    checkpoint = run / "checkpoints" / "full" / "checkpoint-1"
    _poisoned(checkpoint / name, how)
    seal_checkpoint(checkpoint)
    run_refused(["pretrain", "--model", tiny_models["bert"], "--corpus", target_corpus, "--out", run,
                 "--max-steps", "4", "--embedding-steps", "1", "--max-seq-length", "32", "--save-steps", "1",
                 "--per-device-train-batch-size", "2", "--use-cpu", "--report-to", "none", "--resume"],
                tmp_path, rf"{pattern}.*delete .*checkpoint-1", capsys)


@pytest.mark.parametrize("seal", ["[1, 2]", '{"files": [1]}', '{"files": {"model.safetensors": "big"}}'],
                         ids=["a list", "files a list", "a size that is no number"])
def test_a_seal_that_is_not_a_seal_marks_the_checkpoint_unfinished(seal, checkpointed_run, tmp_path):
    from langgraft.training.checkpoints import SEAL_FILE, valid_checkpoints

    run = shutil.copytree(checkpointed_run, tmp_path / "run")
    (run / "checkpoints" / "full" / "checkpoint-1" / SEAL_FILE).write_text(seal, encoding="utf-8")
    sealed, broken = valid_checkpoints(run / "checkpoints" / "full")
    assert [p.name for p in broken] == ["checkpoint-1"] and sealed == []


def test_a_distillation_checkpoint_pickle_that_weights_only_refuses_gets_one_line_on_resume(
        tiny_models, extended_tokenizers, target_corpus, tmp_path, capsys):
    from langgraft.training.checkpoints import seal_checkpoint

    init, out = tmp_path / "init", tmp_path / "distilled"
    assert main(["init", "--source", str(tiny_models["bert"]), "--tokenizer", str(extended_tokenizers["bert"]),
                 "--method", "mean", "--mode", "extend", "--out", str(init)]) == 0
    argv = ["distill", "--model", init, "--corpus", target_corpus, "--out", out, "--max-steps", "2", "--use-cpu"]
    assert main([str(a) for a in argv]) == 0
    record = json.loads((out / "distill_summary.json").read_text(encoding="utf-8"))
    (out / "distill_summary.json").write_text(json.dumps({"identity": record["identity"], "finished": False}),
                                              encoding="utf-8")  # as a run interrupted after its first checkpoint
    checkpoint = out / "checkpoints" / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    torch.save({"note": datetime.date(2024, 5, 1)}, checkpoint / "optimizer.pt")
    seal_checkpoint(checkpoint)
    run_refused([*argv, "--resume"], tmp_path, r"optimizer\.pt.*weights_only.*delete .*checkpoint-1", capsys)


# ----------------------------------------------------------------------------- warnings of ours

REPO = Path(__file__).resolve().parents[1]


def test_no_source_file_warns_when_compiled():
    """``python -W default`` shows compile-time warnings (an invalid escape in a docstring) on a plain run."""
    sources = [p for p in REPO.rglob("*.py") if not {".venv", "build", ".git"} & set(p.relative_to(REPO).parts)]
    assert len(sources) > 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in sources:
            compile(path.read_text(encoding="utf-8"), str(path), "exec")


# ----------------------------------------------------------------------------- run folders on a rerun

def _planned_run(folder: Path, models: dict[str, Path], corpus: Path) -> tuple[Path, Path, dict[str, str]]:
    """A tiny pipeline file, its run folder and its stage keys (nothing run)."""
    from langgraft import Pipeline

    path = folder / "p.yaml"
    path.write_text(json.dumps({"language": "xx", "source_model": str(models["bert"]), "name": "r",
                                "corpora": {"target": {"files": [str(corpus)]}},
                                "tokenizer": {"vocab_size": 200}, "init": {"method": "mean"}, "pretrain": None,
                                "evaluation": {"retrieval": None}}), encoding="utf-8")
    pipeline = Pipeline.from_yaml(path)
    pipeline.run_dir.mkdir(parents=True)
    return path, pipeline.run_dir, pipeline.keys()


def _stage(run: Path, keys: dict[str, str], name: str) -> Path:
    return run / "stages" / f"{name}-{keys[name][:12]}"


RUN_FOLDER_CASES: dict[str, tuple[Callable[[Path, dict[str, str]], None], str]] = {
    "a ledger entry that is a number": (lambda run, keys: (run / "stages.json").write_text('{"stages": {"corpus": 5}}'),
                                        r"stages\.json.*entry of stage 'corpus' must be an object"),
    "a ledger that is truncated": (lambda run, keys: (run / "stages.json").write_text('{"stages": {'),
                                   r"stages\.json.*not valid JSON"),
    "stages that is a file": (lambda run, keys: (run / "stages").write_text("x"), r"stages is not a folder"),
    "a finished stage folder without its record": (lambda run, keys: _stage(run, keys, "corpus").mkdir(parents=True),
                                                   r"corpus-\w+ is not a finished corpus stage \(no stage\.json"),
    "a finished stage that is a file": (lambda run, keys: (_folder(run / "stages"), _stage(run, keys, "tokenizer")
                                                           .write_text("x")),
                                        r"not a finished tokenizer stage"),
    "a .partial that is a file": (lambda run, keys: (_folder(run / "stages"), _stage(run, keys, "init")
                                                     .with_name(_stage(run, keys, "init").name + ".partial")
                                                     .write_text("x")),
                                  r"init-\w+\.partial is not a folder"),
}


@pytest.mark.parametrize("case", RUN_FOLDER_CASES, ids=list(RUN_FOLDER_CASES))
def test_a_damaged_run_folder_is_refused_before_any_stage_runs(case, tiny_models, target_corpus, tmp_path, capsys):
    mutate, pattern = RUN_FOLDER_CASES[case]
    path, run, keys = _planned_run(tmp_path, tiny_models, target_corpus)
    mutate(run, keys)
    run_refused(["run", path], tmp_path, pattern, capsys)


def _published_run(run: Path, module_name: str, stage_name: str = "module-m") -> Path:
    """A run record with an init stage and one module stage whose record names ``module_name``."""
    key = "ab" * 32
    run.mkdir(parents=True)
    (run / "pipeline.json").write_text(json.dumps({"name": "r", "config": {"language": "xx"},
                                                   "stages": {"init": key, stage_name: key}}), encoding="utf-8")
    (run / "stages" / f"init-{key[:12]}" / "model").mkdir(parents=True)
    module = run / "stages" / f"{stage_name}-{key[:12]}"
    (module / "module").mkdir(parents=True)
    (module / "stage.json").write_text(json.dumps({"config": {"module": {"name": module_name, "role": "language",
                                                                          "kind": "lora"}}}), encoding="utf-8")
    return run


@pytest.mark.parametrize("module_name, stage_name, pattern", [
    ("../../../evil", "module-m", r"stage\.json: the stage record names no module"),
    ("m", "../../evil", r"pipeline\.json: '\.\./\.\./evil' is not a stage name"),
], ids=["a module name climbing out of the published folder", "a stage name climbing out of the run"])
def test_publish_refuses_names_that_leave_their_folder(module_name, stage_name, pattern, tmp_path, capsys):
    run = _published_run(tmp_path / "work" / "run", module_name, stage_name)
    run_refused(["publish", run, "--out", tmp_path / "work" / "published"], tmp_path, pattern, capsys)
    assert not (tmp_path / "evil").exists()


def test_publish_refuses_a_stage_key_that_is_not_a_sha256(tmp_path, capsys):
    run = _published_run(tmp_path / "run", "m")
    record = json.loads((run / "pipeline.json").read_text())
    record["stages"]["init"] = "/../../../../" + "0" * 60
    (run / "pipeline.json").write_text(json.dumps(record), encoding="utf-8")
    run_refused(["publish", run, "--out", tmp_path / "published"], tmp_path, r"key of stage 'init' is not a stage key",
                capsys)
