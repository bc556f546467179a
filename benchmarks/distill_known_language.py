"""Distilled embeddings on a known language (issue 20): English-tokenized source models that already read Chichewa.

A small decoder (GPT-2-like, tied head) and a small masked LM (BERT-like) are built here with an
English-only tokenizer (byte-level BPE / WordPiece trained on the English train books) and trained on
English + Chichewa train books mixed, so Chichewa is known but costly (many tokens per character).
Each source then gets a Chichewa tokenizer, by extension (``langgraft tokenizer extend``) and by
replacement (``langgraft tokenizer train``), and new embedding rows from every initializer compared:
the heuristics (mean, fvt, focus), langgraft's teacher distillation (``langgraft distill``, same-text
teacher = the source model on its own tokenization) and, for the decoder extension, Token
Distillation's own code (``benchmarks/anchors/tokdist_run.py`` in its own environment). Reported per
family and mode: tokens per character of the held-out text, step-0 bpc relative to the source's own
bpc on the same text, and held-out bpc after 50 and 200 steps of ``langgraft pretrain`` from each
init (one 200-step run per init, evaluated every 50 steps).

    nice -n 10 python benchmarks/distill_known_language.py --out runs/distill-bench/known

Every stage writes its own folder under ``--out`` and is skipped when that folder exists, so a
rerun does only what is missing. Results: ``results.json`` and a Markdown table (``--table``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decoder_source import build_tokenizer as build_byte_level_tokenizer  # noqa: E402

HERE = Path(__file__).resolve().parent
ANCHORS = HERE / ".anchors"
TOKDIST_URL = "https://github.com/konstantinjdobler/token-distillation"
HEURISTICS = ("mean", "fvt", "focus")
FAMILIES = ("decoder", "mlm")
MODES = ("extend", "replace")


def lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield line.rstrip("\n")


def run_measured(command: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run one process, log its output; return wall seconds and the peak RSS of that process tree (os.wait4)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(" ".join(command) + "\n")
        handle.flush()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(command)}; log: {log}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def langgraft(*args: str) -> list[str]:
    """The langgraft CLI of the running environment."""
    return [str(Path(sys.executable).parent / "langgraft"), *args]


def stage(folder: Path, build, *, marker: str = "done.json") -> dict[str, Any]:
    """Build ``folder`` once: ``build(tmp)`` fills a temporary folder that is renamed when it succeeds."""
    done = folder / marker
    if done.exists():
        return json.loads(done.read_text())
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    info = build(tmp) or {}
    (tmp / marker).write_text(json.dumps(info, indent=1))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return info


# ----------------------------------------------------------------------------- inputs

def prepare_corpora(out: Path, eval_docs: int) -> dict[str, Path]:
    for lang in ("eng", "nya"):
        stage(out / lang, lambda tmp, lang=lang: run_measured(
            langgraft("corpus", "prepare", "--bible", lang, "--out", str(tmp / "c")), tmp / "log.txt"))
    files = {f"{lang}_{split}": out / lang / "c" / f"{split}.txt" for lang in ("eng", "nya") for split in ("train", "test")}
    held = out / "heldout-nya.txt"
    if not held.exists():
        docs = [line for _, line in zip(range(eval_docs), lines(files["nya_test"]))]
        held.write_text("\n".join(docs) + "\n", encoding="utf-8")
    held_en = out / "heldout-eng.txt"
    if not held_en.exists():
        docs = [line for _, line in zip(range(eval_docs), lines(files["eng_test"]))]
        held_en.write_text("\n".join(docs) + "\n", encoding="utf-8")
    files["heldout"], files["heldout_eng"] = held, held_en
    return files


def build_english_tokenizer(family: str, corpus: Path, vocab_size: int, out: Path) -> Any:
    """English-only tokenizer: GPT-2's byte-level BPE pipeline, or BERT's uncased WordPiece pipeline."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    if family == "decoder":
        return build_byte_level_tokenizer(str(corpus), vocab_size, out)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.train_from_iterator(lines(corpus), trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials))
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = BertTokenizerFast(tokenizer_object=backend, do_lower_case=True)
    tokenizer.save_pretrained(out)
    return tokenizer


def build_model(family: str, tokenizer: Any, args: argparse.Namespace, out: Path) -> None:
    import torch
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(args.seed)
    if family == "decoder":
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=args.context, n_embd=args.hidden,
                            n_layer=args.layers, n_head=args.heads, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
        GPT2LMHeadModel(config).save_pretrained(out)
    else:
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
                            num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                            max_position_embeddings=args.context + 2, pad_token_id=tokenizer.pad_token_id,
                            tie_word_embeddings=True)
        BertForMaskedLM(config).save_pretrained(out)


def train_args(args: argparse.Namespace, steps: int, lr: float) -> list[str]:
    return ["--max-steps", str(steps), "--per-device-train-batch-size", str(args.batch_size),
            "--max-seq-length", str(args.context), "--learning-rate", str(lr), "--warmup-steps", "0.05",
            "--seed", str(args.seed), "--logging-steps", "25", "--use-cpu", "--report-to", "none"]


def build_source(family: str, files: dict[str, Path], args: argparse.Namespace, out: Path) -> Path:
    """English-tokenized source model, trained on English + Chichewa train books mixed."""
    init = out / "source-init"

    def make_init(tmp: Path) -> dict[str, Any]:
        tokenizer = build_english_tokenizer(family, files["eng_train"], args.vocab_size, tmp / "m")
        build_model(family, tokenizer, args, tmp / "m")
        return {"vocab": len(tokenizer)}
    stage(init, make_init)

    source = out / "source"
    stage(source, lambda tmp: run_measured(langgraft(
        "pretrain", "--model", str(init / "m"), "--corpus", str(files["eng_train"]), str(files["nya_train"]),
        "--out", str(tmp / "run"), "--save-steps", str(args.source_steps),
        "--eval-corpus", str(files["heldout"]), "--eval-steps", str(args.source_steps // 4),
        *train_args(args, args.source_steps, args.source_lr)), tmp / "log.txt"))
    return source / "run"


def build_tokenizers(source: Path, files: dict[str, Path], args: argparse.Namespace, out: Path) -> dict[str, Path]:
    ext, rep = out / "tok-extend", out / "tok-replace"
    stage(ext, lambda tmp: run_measured(langgraft(
        "tokenizer", "extend", "--source", str(source), "--corpus", str(files["nya_train"]),
        "--new-tokens", str(args.new_tokens), "--out", str(tmp / "t")), tmp / "log.txt"))
    stage(rep, lambda tmp: run_measured(langgraft(
        "tokenizer", "train", "--source", str(source), "--corpus", str(files["nya_train"]),
        "--vocab-size", str(args.target_vocab_size), "--out", str(tmp / "t")), tmp / "log.txt"))
    return {"extend": ext / "t", "replace": rep / "t"}


def tokens_per_char(tokenizer_dir: Path, text: Path) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    docs = list(lines(text))
    tokens = sum(len(ids) for ids in tokenizer(docs, add_special_tokens=False)["input_ids"])
    return tokens / sum(len(doc) for doc in docs)


# ----------------------------------------------------------------------------- inits

def heuristic_init(method: str, source: Path, tokenizer: Path, files: dict[str, Path], out: Path) -> Path:
    extra = ["--target-corpus", str(files["nya_train"]), "--workdir", str(out.parent / "workdir")] if method == "focus" else []
    stage(out, lambda tmp: run_measured(langgraft(
        "init", "--source", str(source), "--tokenizer", str(tokenizer), "--method", method,
        "--out", str(tmp / "m"), "--seed", "0", *extra), tmp / "log.txt"))
    return out / "m"


def distill_init(start: Path, source: Path, files: dict[str, Path], args: argparse.Namespace, out: Path) -> Path:
    """langgraft's teacher distillation (same text: the source on its own tokenization is the teacher)."""
    stage(out, lambda tmp: run_measured(langgraft(
        "distill", "--model", str(start), "--teacher", str(source), "--corpus", str(files["nya_train"]),
        "--out", str(tmp / "m"), *args.distill_option), tmp / "log.txt"))
    return out / "m"


def tokdist_repo(args: argparse.Namespace) -> Path:
    """Token Distillation's code: --tokdist-repo / $LANGGRAFT_TOKDIST_REPO, else a clone in benchmarks/.anchors."""
    given = args.tokdist_repo or os.environ.get("LANGGRAFT_TOKDIST_REPO")
    if given and (Path(given) / "token_distillation").is_dir():
        return Path(given)
    target = ANCHORS / "token-distillation"
    if not target.exists():
        ANCHORS.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--quiet", given or TOKDIST_URL, str(target)], check=True)
    return target


def tokdist_python() -> Path:
    """Its own environment under benchmarks/.anchors: pip installs what langgraft's lacks (PyPI only); torch,
    transformers and datasets are langgraft's own (a .pth file), so both sides run the same versions. The package
    itself is imported from its repository folder."""
    venv = ANCHORS / "tokdist-venv"
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        ours = "\n".join(entry for entry in sys.path if entry.endswith("site-packages"))
        theirs = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
        Path(theirs, "zz-langgraft-env.pth").write_text(ours + "\n")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "ahocorasick-rs==1.0.3", "fire==0.7.1"], check=True)
        (venv / "ready").write_text("ok\n")
    return python


def tokdist_init(fvt_ext: Path, source: Path, tokenizer: Path, files: dict[str, Path], args: argparse.Namespace,
                 out: Path) -> Path:
    """Token Distillation's package on the extension inputs; its rows written into the extended checkpoint."""
    repo = tokdist_repo(args)
    python = tokdist_python()

    def build(tmp: Path) -> dict[str, Any]:
        docs = tmp / "data"
        docs.mkdir()
        verses = list(lines(files["nya_train"]))  # documents of N consecutive verses: snippets need ~50 tokens
        groups = [" ".join(verses[i:i + args.tokdist_verses]) for i in range(0, len(verses), args.tokdist_verses)]
        (docs / "train.txt").write_text("\n".join(groups) + "\n", encoding="utf-8")
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
                   PYTHONPATH=str(repo / "token_distillation"))  # the package as its README says: its folder
        cost = run_measured([str(python), str(HERE / "anchors" / "tokdist_run.py"), "--source", str(source),
                             "--tokenizer", str(tokenizer), "--data", str(docs), "--out", str(tmp / "tokdist"),
                             "--snippets-per-token", str(args.tokdist_snippets), "--snippet-len", "50",
                             "--batch-size", "16", "--learning-rate", str(args.tokdist_lr), "--seed", str(args.seed),
                             "--loss-methods", "MSE-on-hiddens", *(["CE-auto-weighted"] if args.tokdist_ntp else [])],
                            tmp / "log.txt", env=env)
        cost.update(write_tokdist_rows(fvt_ext, tokenizer, tmp / "tokdist", tmp / "m"))
        shutil.rmtree(tmp / "cache", ignore_errors=True)
        return cost
    stage(out, build)
    return out / "m"


def write_tokdist_rows(fvt_ext: Path, tokenizer_dir: Path, tokdist_out: Path, target: Path) -> dict[str, Any]:
    """Copy Token Distillation's learned rows (by token string) into langgraft's extended checkpoint.

    Both start from the subtoken mean (FVT); tokens it skipped (too few snippets) keep that row, as its
    own output would. Evaluated with langgraft's extended tokenizer, so every init sees the same ids.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ours = AutoModelForCausalLM.from_pretrained(fvt_ext)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    theirs = AutoModelForCausalLM.from_pretrained(tokdist_out)
    their_tok = AutoTokenizer.from_pretrained(tokdist_out)
    learned = json.loads((tokdist_out / "new_tokens.json").read_text())
    rows_ours = ours.get_input_embeddings().weight.data
    rows_theirs = theirs.get_input_embeddings().weight.data
    vocab = their_tok.get_vocab()
    copied = 0
    with torch.no_grad():
        for piece, text in learned.items():
            their_id = vocab.get(text)
            if their_id is None:
                continue
            rows_ours[tokenizer.convert_tokens_to_ids(piece)] = rows_theirs[their_id]
            copied += 1
    ours.tie_weights()
    ours.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return {"rows_distilled": copied, "new_tokens": len(learned)}


# ----------------------------------------------------------------------------- measurements

def bpc(model: Path, text: Path, log: Path) -> float:
    if not log.exists():
        result = subprocess.run(langgraft("eval", "bpc", "--model", str(model), "--corpus", str(text), "--json"),
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"eval bpc failed on {model}: {result.stderr.strip()[-2000:]}")
        log.write_text(result.stdout)
    return json.loads(log.read_text())["bpc"]


def train_curve(init: Path, files: dict[str, Path], args: argparse.Namespace, out: Path) -> dict[str, float]:
    stage(out, lambda tmp: run_measured(langgraft(
        "pretrain", "--model", str(init), "--corpus", str(files["nya_train"]), "--out", str(tmp / "run"),
        "--eval-corpus", str(files["heldout"]), "--eval-steps", "50", "--save-steps", str(args.train_steps),
        *train_args(args, args.train_steps, args.train_lr)), tmp / "log.txt"))
    records = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {str(r["step"]): r["eval_bpc"] for r in records if "eval_bpc" in r}


def measure_family(family: str, files: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out) / family
    source = build_source(family, files, args, out)
    tokenizers = build_tokenizers(source, files, args, out)
    result: dict[str, Any] = {
        "source_bpc_nya": bpc(source, files["heldout"], out / "source-bpc-nya.json"),
        "source_bpc_eng": bpc(source, files["heldout_eng"], out / "source-bpc-eng.json"),
        "source_tokens_per_char": tokens_per_char(source, files["heldout"]),
        "source_train": json.loads((out / "source" / "done.json").read_text()),
        "modes": {}}
    for mode in args.modes:
        tok = tokenizers[mode]
        rows: dict[str, Any] = {}
        inits: dict[str, Path] = {}
        for method in HEURISTICS:
            inits[method] = heuristic_init(method, source, tok, files, out / f"{mode}-{method}")
        if args.distill:
            start = inits[args.distill_start]
            inits["distill"] = distill_init(start, source, files, args, out / f"{mode}-distill")
        if args.tokdist and family == "decoder" and mode == "extend":
            name = "tokdist" + args.tokdist_tag
            inits[name] = tokdist_init(inits["fvt"], source, tok, files, args, out / f"{mode}-{name}")
        for name, init in inits.items():
            step0 = bpc(init, files["heldout"], out / f"{mode}-{name}-bpc.json")
            rows[name] = {"step0_bpc": step0, "relative_to_source": step0 / result["source_bpc_nya"]}
            if name == "distill" or name.startswith("tokdist"):
                rows[name]["cost"] = json.loads((out / f"{mode}-{name}" / "done.json").read_text())
        best = min(HEURISTICS, key=lambda m: rows[m]["step0_bpc"])
        rows[best]["best_heuristic"] = True
        trained = [n for n in inits if (args.train == "all" or n == best or n not in HEURISTICS)
                   and (not args.train_only or n in args.train_only)]
        for name in trained if args.train_steps else []:
            rows[name]["curve"] = train_curve(inits[name], files, args, out / f"{mode}-{name}-train")
        result["modes"][mode] = {"tokens_per_char": tokens_per_char(tok, files["heldout"]), "inits": rows}
        write_results(args, family, result)
    return result


def write_results(args: argparse.Namespace, family: str, result: dict[str, Any]) -> None:
    path = Path(args.out) / "results.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    modes = {**data.get(family, {}).get("modes", {}), **result["modes"]}  # runs limited by --modes add to the others
    data[family] = {**result, "modes": modes}
    path.write_text(json.dumps(data, indent=1))


def table(data: dict[str, Any]) -> str:
    out = []
    for family, result in data.items():
        src = result["source_bpc_nya"]
        out.append(f"\n{family}: source bpc on held-out Chichewa {src:.4f} (English held-out {result['source_bpc_eng']:.4f}), "
                   f"{result['source_tokens_per_char']:.4f} tokens/char\n")
        out.append("| mode | init | tokens/char | step-0 bpc | vs source | bpc at 50 | bpc at 200 | init wall s | peak RSS MB |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for mode, block in result["modes"].items():
            for name, row in block["inits"].items():
                curve = row.get("curve", {})
                cost = row.get("cost", {})
                label = f"{name} (best heuristic)" if row.get("best_heuristic") else name
                out.append(f"| {mode} | {label} | {block['tokens_per_char']:.4f} | {row['step0_bpc']:.4f} | "
                           f"{100 * (row['relative_to_source'] - 1):+.2f}% | {curve.get('50', float('nan')):.4f} | "
                           f"{curve.get('200', float('nan')):.4f} | {cost.get('wall_s', '')} | {cost.get('peak_rss_mb', '')} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/distill-bench/known")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--eval-docs", type=int, default=300, help="held-out Chichewa verses (test books)")
    parser.add_argument("--vocab-size", type=int, default=4000, help="English source tokenizer")
    parser.add_argument("--new-tokens", type=int, default=2000, help="Chichewa pieces added by extension")
    parser.add_argument("--target-vocab-size", type=int, default=4000, help="Chichewa replacement tokenizer")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--source-steps", type=int, default=400)
    parser.add_argument("--source-lr", type=float, default=1e-3)
    parser.add_argument("--train-steps", type=int, default=200, help="pretraining from each init (0: step 0 only)")
    parser.add_argument("--train-lr", type=float, default=3e-4)
    parser.add_argument("--train", choices=("all", "best"), default="all",
                        help="pretrain from every init, or from the best heuristic (step-0 bpc) and the distilled ones")
    parser.add_argument("--train-only", nargs="*", default=[], help="pretrain only from these inits in this run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distill", action="store_true", help="add langgraft distill rows")
    parser.add_argument("--distill-start", default="fvt", choices=HEURISTICS, help="init the distillation starts from")
    parser.add_argument("--distill-option", action="append", default=[], help="extra argument for langgraft distill")
    parser.add_argument("--tokdist", action="store_true", help="add Token Distillation's own code (decoder extension)")
    parser.add_argument("--tokdist-repo", help="its repository (default $LANGGRAFT_TOKDIST_REPO, else cloned from GitHub)")
    parser.add_argument("--tokdist-snippets", type=int, default=25, help="snippets per new token (paper: 25)")
    parser.add_argument("--tokdist-lr", type=float, default=1e-4)
    parser.add_argument("--tokdist-ntp", action="store_true",
                        help="add its alpha-NTP term (loss CE-auto-weighted; langgraft distill --ntp-weight 1)")
    parser.add_argument("--tokdist-tag", default="", help="suffix of its row and folder name (tokdist<TAG>)")
    parser.add_argument("--tokdist-verses", type=int, default=8, help="consecutive verses per mined document")
    parser.add_argument("--table", action="store_true", help="print the table of an existing results.json")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads((Path(args.out) / "results.json").read_text())))
        return 0
    files = prepare_corpora(Path(args.out), args.eval_docs)
    for family in args.families:
        measure_family(family, files, args)
    print(table(json.loads((Path(args.out) / "results.json").read_text())))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
