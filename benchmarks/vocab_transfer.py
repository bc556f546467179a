"""Vocabulary transfer measured against the original packages (issue 3, "Measured against the originals").

Every langgraft method runs as a whole ``langgraft init`` process, and the PyPI packages
``wechsel`` 0.0.4 and ``deepfocus`` 1.0.1 run as whole processes doing the same job (load the
source model, the tokenizers and the same fastText models / dictionary, compute the matrix, save a
checkpoint). Each output is scored by step-0 bits per character on held-out target text with fixed
word masks (:func:`langgraft.eval.bpc.compute_bpc`). The transfer computation alone (alignment,
similarities, weighting, given loaded fastText models) is timed in-process for langgraft's
``wechsel`` and the package's.

Like for like, the output bias: the packages return only an input-embedding matrix (used as the
tied input/output embedding). Their checkpoints get the MLM output bias by the rule langgraft's
engine applies to its own methods, with the package's own weights: ``wechsel``'s neighbours and
softmax weights (``info.sources``), ``deepfocus``'s sparsemax weights (recorded by wrapping its
per-token loop, the package's code unchanged) and its copies; specials by role; tokens a package
drew at random get the mean bias. Every MLM checkpoint is also scored with its bias zeroed, a
fixed bias that no rule touches. ``--calibrate-bias`` calibrates every checkpoint, packages
included.

Example (the demo case; build the inputs first, see docs/benchmarks.md):

    nice -n 10 python benchmarks/vocab_transfer.py --source runs/vt/minilm-mlm \
        --tokenizer runs/vt/nya-wp16k --source-embeddings runs/vt/ft/eng.bin \
        --target-embeddings runs/vt/ft/nya.bin --dictionary runs/vt/dict.tsv \
        --token-embeddings runs/vt/ft/nya-tokens.bin \
        --parallel runs/vt/eng/train.tsv runs/vt/nya/train.tsv --alignment-table runs/vt/align.tsv \
        --eval runs/vt/nya/test.txt --eval-docs 1000 --out runs/vt/bench

The packages run from the anchor environment (``benchmarks/anchors.sh``), built under the ignored
``benchmarks/.anchors/`` on first use unless ``--package-path`` names another.

``clp`` is not in the default methods: it needs ``--helper`` (``benchmarks/clp_helper.py``).
Methods already in ``--out/results.json`` are skipped, so a later run adds rows without losing any.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from anchor_env import anchor_site_packages  # sibling benchmark module (benchmarks/ is on the path when a script runs)

# a run is METHOD or METHOD:key=value,... (extra --option values for `langgraft init`)
LANGGRAFT_METHODS = ("random", "mean", "fvt", "wechsel", "focus", "transtok", "ofa",
                     "focus:fvt_fallback=true", "transtok:fvt_fallback=true", "focus:transtok_share=0.5")
PACKAGES = ("wechsel-package", "deepfocus-package")
PACKAGE_SUMMARY = "package_summary.json"
PACKAGE_MAPPING = "package_mapping.safetensors"  # the package's neighbours/weights (TokenMapping tensors)

def planned_rows(matrix, plan, generator):
    """Every target row of ``plan`` from ``matrix`` (float32), as ``langgraft init`` fills them
    (``fill_rows``: neighbour sums, specials by role, fallback rows; the mean for a 1-D bias)."""
    import torch

    from langgraft.vocab.transfer import fill_rows

    out = torch.empty((plan.source_ids.shape[0], *matrix.shape[1:]), dtype=torch.float32)
    fill_rows(out, matrix.detach().float(), plan, generator)
    return out

def timed_process(command: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``command`` under /usr/bin/time; wall seconds and peak RSS (MB) of the whole process."""
    stats = log.with_suffix(".time")
    started = time.perf_counter()
    with open(log, "w") as handle:
        result = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", str(stats), *command],
                                stdout=handle, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}); see {log}")
    _, peak_kb = stats.read_text().split()[-2:]
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(int(peak_kb) / 1024)}


def init_command(run: str, args: argparse.Namespace, out: Path) -> list[str]:
    method, _, extra = run.partition(":")
    command = ["langgraft", "init", "--source", args.source, "--tokenizer", args.tokenizer, "--method", method,
               "--out", str(out), "--seed", "0"]
    for option in filter(None, extra.split(",")):
        command += ["--option", option]
    if method in ("wechsel", "ofa"):
        command += ["--source-embeddings", args.source_embeddings, "--target-embeddings", args.target_embeddings,
                    "--dictionary", args.dictionary]
    if method == "focus":
        command += ["--option", f"token_embeddings={args.token_embeddings}"]
    if method == "clp":
        if not args.helper:
            raise SystemExit("clp needs --helper MODEL (a small model using the target tokenizer, "
                             "e.g. from benchmarks/clp_helper.py)")
        command += ["--helper", args.helper]
    if method == "transtok" or "transtok_share" in extra:
        if args.alignment_table:
            command += ["--option", f"alignment_table={args.alignment_table}"]
        else:
            command += ["--parallel", *args.parallel]
    if args.calibrate_bias:
        command += ["--calibrate-bias", "--target-corpus", args.calibrate_bias]
    return command


# ------------------------------------------------------------------------------------ packages
def wechsel_package(args: argparse.Namespace, ctx) -> tuple:
    """The ``wechsel`` package's matrix and its own neighbours/weights (``info.sources``) as a TokenMapping."""
    import fasttext
    import torch
    from wechsel import WECHSEL

    from langgraft.vocab.init.base import TokenMapping

    source_ft, target_ft = fasttext.load_model(args.source_embeddings), fasttext.load_model(args.target_embeddings)
    loaded = time.perf_counter()
    aligner = WECHSEL(source_ft, target_ft, bilingual_dictionary=args.dictionary)
    matrix, info = aligner.apply(ctx.source_tokenizer, ctx.target_tokenizer, ctx.source_embeddings.numpy())
    source_vocab = ctx.source_tokenizer.get_vocab()
    target_ids = ctx.new_token_ids
    pieces = ctx.target_tokenizer.convert_ids_to_tokens(target_ids.tolist())
    ids = torch.full((len(target_ids), 10), -1, dtype=torch.long)
    weights = torch.zeros(len(target_ids), 10)
    for row, piece in enumerate(pieces):
        if piece in info.sources:  # tokens without a fastText vector are in info.not_found (random rows)
            tokens, token_weights, _ = info.sources[piece]
            ids[row, :len(tokens)] = torch.tensor([source_vocab[t] for t in tokens])
            weights[row, :len(tokens)] = torch.tensor(token_weights, dtype=torch.float32)
    return matrix, TokenMapping.from_neighbours(target_ids, ids, weights), loaded


def deepfocus_package(args: argparse.Namespace, ctx) -> tuple:
    """The ``deepfocus`` package's matrix and its own weights as a TokenMapping.

    FOCUS returns only the matrix, so its sparsemax weights are recorded on the way: the
    package's per-token loop is wrapped (the package's code runs unchanged) to keep, for each
    new token, the sparsemax weights it applied over the overlapping tokens; overlapping tokens
    are copies (weight 1 on the source token the package copied); tokens it drew at random are
    fallback rows.
    """
    import types

    import deepfocus.focus as package
    import torch
    from deepfocus import FOCUS

    from langgraft.vocab.init.base import COPIED, TokenMapping

    recorded: dict = {}
    original_loop, original_entmax = package.focus_additional_token_initialization, package.entmax

    def recording_loop(overlapping_tokens, new_tokens, target_embeddings, device=None):
        recorded["anchors"] = [t.source[0].id for t in overlapping_tokens.values()]
        recorded["targets"] = [t.target.id for t in new_tokens.values()]
        recorded["weights"] = []

        def sparsemax(scores, *a, **k):
            out = original_entmax.sparsemax(scores, *a, **k)
            recorded["weights"].append(out.detach().float().cpu())
            return out

        package.entmax = types.SimpleNamespace(sparsemax=sparsemax)
        try:
            return original_loop(overlapping_tokens, new_tokens, target_embeddings, device=device)
        finally:
            package.entmax = original_entmax

    original_overlap = package.get_overlapping_tokens

    def recording_overlap(**kwargs):
        overlap, new = original_overlap(**kwargs)
        recorded["copies"] = {t.target.id: t.source[0].id for t in overlap.values()}
        return overlap, new

    package.focus_additional_token_initialization = recording_loop
    package.get_overlapping_tokens = recording_overlap
    loaded = time.perf_counter()
    try:
        matrix = FOCUS(target_tokenizer=ctx.target_tokenizer, source_tokenizer=ctx.source_tokenizer,
                       source_embeddings=ctx.source_embeddings, fasttext_model_path=args.token_embeddings,
                       seed=0, verbosity="silent")
    finally:
        package.focus_additional_token_initialization = original_loop
        package.get_overlapping_tokens = original_overlap
    anchors = torch.tensor(recorded["anchors"], dtype=torch.long)
    position = {target_id: row for row, target_id in enumerate(ctx.new_token_ids.tolist())}
    width = max([int((w > 0).sum()) for w in recorded["weights"]] + [1])
    ids = torch.full((len(position), width), -1, dtype=torch.long)
    weights = torch.zeros(len(position), width)
    for target_id, row_weights in zip(recorded["targets"], recorded["weights"]):
        support = torch.nonzero(row_weights > 0).squeeze(1)
        ids[position[target_id], :len(support)] = anchors[support]
        weights[position[target_id], :len(support)] = row_weights[support]
    mapping = TokenMapping.from_neighbours(ctx.new_token_ids, ids, weights)
    copied = [(position[t], s) for t, s in recorded["copies"].items() if t in position]
    if copied:
        rows, sources = torch.tensor(copied).T
        mapping.source_ids[rows] = -1
        mapping.weights[rows] = 0.0
        mapping.source_ids[rows, 0] = sources
        mapping.weights[rows, 0] = 1.0
        mapping.kinds[rows] = COPIED
    return matrix, mapping, loaded


def save_package_checkpoint(ctx, matrix, mapping, out: Path, calibrate: str | None) -> dict:
    """Stock checkpoint from a package's input matrix (tied head), with the output bias made by the
    rule langgraft's engine applies (the package's own neighbour weights on the source bias,
    specials by role, fallback rows the mean bias), optionally calibrated as ``init --calibrate-bias``."""
    import torch
    from safetensors.torch import save_file

    from langgraft.vocab.transfer import build_plan, set_special_ids

    model, target_tokenizer = ctx.source.model, ctx.target_tokenizer
    plan = build_plan(ctx, mapping)
    output = model.get_output_embeddings()
    old_bias = None if output is None or getattr(output, "bias", None) is None else output.bias.detach().clone()
    model.resize_token_embeddings(len(target_tokenizer), mean_resizing=False)
    summary = {"coverage": round(1.0 - mapping.counts()["fallback"] / len(mapping.target_ids), 6)}
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(torch.as_tensor(matrix, dtype=torch.float32))
        if old_bias is not None:
            model.get_output_embeddings().bias.copy_(planned_rows(old_bias, plan, ctx.generator(3)))
    model.config.vocab_size = len(target_tokenizer)
    set_special_ids(model, target_tokenizer)
    if calibrate:
        from langgraft.vocab.calibration import calibrate_output_bias
        from langgraft.vocab.transfer import head_kind

        summary["bias_calibration"] = calibrate_output_bias(model, target_tokenizer, [calibrate], mapping.target_ids,
                                                            objective=head_kind(model.config), seed=0)
    model.save_pretrained(out)
    target_tokenizer.save_pretrained(out)
    (out / PACKAGE_SUMMARY).write_text(json.dumps(summary, indent=2))
    save_file({"target_ids": mapping.target_ids, "source_ids": mapping.source_ids, "weights": mapping.weights,
               "kinds": mapping.kinds}, out / PACKAGE_MAPPING)  # for row-by-row comparisons
    return summary


def load_lm(checkpoint: str):
    """The checkpoint with its LM head: causal for decoders (``*ForCausalLM``/``*LMHeadModel``), else masked."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    architectures = AutoConfig.from_pretrained(checkpoint).architectures or []
    causal = any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)
    return (AutoModelForCausalLM if causal else AutoModelForMaskedLM).from_pretrained(checkpoint)


def run_package(args: argparse.Namespace) -> int:
    """Whole process of one package (invoked as a subprocess by :func:`main`)."""
    import fasttext
    from transformers import AutoTokenizer

    from langgraft.vocab.checkpoint import ModelSource
    from langgraft.vocab.init.base import TransferContext

    fasttext.FastText.eprint = lambda *a, **k: None
    started = time.perf_counter()
    ctx = TransferContext(ModelSource(load_lm(args.source)), AutoTokenizer.from_pretrained(args.source),
                          AutoTokenizer.from_pretrained(args.tokenizer))
    runner = wechsel_package if args.run_package == "wechsel-package" else deepfocus_package
    matrix, mapping, loaded = runner(args, ctx)
    computed = time.perf_counter()
    save_package_checkpoint(ctx, matrix, mapping, Path(args.out), args.calibrate_bias)
    print(json.dumps({"load_s": round(loaded - started, 2), "compute_s": round(computed - loaded, 2)}))
    return 0


# ------------------------------------------------------------------------- computation only
def computation_only(args: argparse.Namespace, repeats: int = 2) -> dict:
    """WECHSEL's transfer computation given loaded fastText models: langgraft vs the package
    (best of ``repeats`` runs each: the machine is shared, the minimum is the least disturbed)."""
    import fasttext
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from wechsel import WECHSEL

    from langgraft.vocab.checkpoint import ModelSource
    from langgraft.vocab.init.base import TransferContext, TransferResources
    from langgraft.vocab.init.wechsel import PACKAGE, WechselConfig, neighbour_mapping, surface_vectors
    from langgraft.vocab.resources.dictionary import read_dictionary
    from langgraft.vocab.resources.fasttext import load_fasttext
    from langgraft.vocab.resources.procrustes import align_spaces

    fasttext.FastText.eprint = lambda *a, **k: None
    source_tokenizer = AutoTokenizer.from_pretrained(args.source)
    target_tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    model = AutoModelForMaskedLM.from_pretrained(args.source)
    source_wv, target_wv = load_fasttext(args.source_embeddings), load_fasttext(args.target_embeddings)
    ctx = TransferContext(ModelSource(model), source_tokenizer, target_tokenizer, resources=TransferResources())
    config = WechselConfig()

    def ours() -> None:
        fresh = TransferContext(ModelSource(model), source_tokenizer, target_tokenizer, resources=TransferResources())
        package_rule = config.surface == PACKAGE
        rotation, _ = align_spaces(read_dictionary(args.dictionary), source_wv, target_wv, exact_case=package_rule)
        source = surface_vectors(source_tokenizer, fresh.source_vocab_size, fresh.source_tokens, source_wv,
                                 config.surface)
        target = surface_vectors(target_tokenizer, fresh.target_vocab_size, fresh.target_tokens, target_wv,
                                 config.surface) @ rotation
        mapping = neighbour_mapping(fresh.new_token_ids, target, source, config.k, config.temperature,
                                    config.block_size, zero_keys=package_rule)
        weights = mapping.weights
        ids = mapping.source_ids.clamp_min(0)
        _ = (weights[:, :, None] * fresh.source_embeddings[ids]).sum(dim=1)  # the rows themselves

    def package() -> None:
        aligner = WECHSEL(source_wv.model, target_wv.model, bilingual_dictionary=args.dictionary)
        aligner.apply(source_tokenizer, target_tokenizer, ctx.source_embeddings.numpy())

    times = {}
    for name, fn in (("langgraft", ours), ("package", package)):
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - started)
        times[name] = round(min(runs), 3)
    times["speedup"] = round(times["package"] / times["langgraft"], 1)
    return times


# ---------------------------------------------------------------------------------- scoring
def score(checkpoint: str, eval_texts: list[str]) -> dict:
    """Step-0 MLM bits per character with the checkpoint's output bias, and again with the bias
    zeroed (a fixed bias that no method's rule touches)."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from langgraft.eval.bpc import compute_bpc

    model = AutoModelForMaskedLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    result = compute_bpc(model, tokenizer, eval_texts, objective="mlm", mask_seed=0, mask_rate=0.15)
    scores = {"bpc": round(result.bpc, 4), "masked_chars": result.characters}
    bias = getattr(model.get_output_embeddings(), "bias", None)
    if bias is not None:
        with torch.no_grad():
            bias.zero_()
        zeroed = compute_bpc(model, tokenizer, eval_texts, objective="mlm", mask_seed=0, mask_rate=0.15)
        scores["bpc_zero_bias"] = round(zeroed.bpc, 4)
    return scores


def coverage(checkpoint: Path) -> float | None:
    """Share of initialized tokens not drawn at random (langgraft's summary, or the package runner's)."""
    for name in ("transfer_summary.json", PACKAGE_SUMMARY):
        if (checkpoint / name).is_file():
            return json.loads((checkpoint / name).read_text())["coverage"]
    return None


def markdown(results: dict) -> str:
    """The results as the table in docs/benchmarks.md."""
    zero_bias = any("bpc_zero_bias" in entry for entry in results.values() if isinstance(entry, dict))
    head = "| method | init wall s (whole process) | peak RSS MB | coverage | step-0 bpc"
    lines = [head + (" (bias by the neighbour rule) | step-0 bpc (bias zeroed) |" if zero_bias else " |"),
             "| --- | --- | --- | --- | --- |" + (" --- |" if zero_bias else "")]
    for name, entry in results.items():
        if name == "computation":
            continue
        cover = "" if entry.get("coverage") is None else f"{entry['coverage']:.3f}"
        wall, peak = entry.get("wall_s", ""), entry.get("peak_rss_mb", "")
        line = f"| {name} | {wall} | {peak} | {cover} | {entry['bpc']} |"
        lines.append(line + (f" {entry.get('bpc_zero_bias', '')} |" if zero_bias else ""))
    if "computation" in results:
        c = results["computation"]
        lines += ["", f"WECHSEL computation given loaded fastText models: langgraft {c['langgraft']} s, "
                      f"package {c['package']} s ({c['speedup']}x)."]
    return "\n".join(lines)


def package_command(package: str, args: argparse.Namespace, out: Path) -> list[str]:
    """This script re-run in ``--run-package`` mode: the package's whole job in its own timed process."""
    command = [sys.executable, str(Path(__file__).resolve()), "--run-package", package,
               "--source", args.source, "--tokenizer", args.tokenizer, "--source-embeddings", args.source_embeddings,
               "--target-embeddings", args.target_embeddings, "--dictionary", args.dictionary,
               "--token-embeddings", args.token_embeddings, "--parallel", *args.parallel, "--out", str(out)]
    return command + (["--calibrate-bias", args.calibrate_bias] if args.calibrate_bias else [])


def package_paths(args: argparse.Namespace) -> list[str]:
    """Where the packages are installed: ``--package-path``, or the anchor environment (built on first use)."""
    return [str(Path(p).resolve()) for p in args.package_path] or [str(anchor_site_packages())]


def package_environment(paths: list[str]) -> dict:
    """The environment of a package process: ``paths`` first on its PYTHONPATH, so the packages
    and their dependencies live outside the environment langgraft runs in."""
    paths = paths + [os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def first_documents(path: str, count: int) -> list[str]:
    """The first ``count`` non-empty lines of ``path``: the held-out documents every method is scored on."""
    texts = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                texts.append(line.rstrip("\n"))
            if len(texts) == count:
                break
    return texts


def add_transfer_inputs(parser: argparse.ArgumentParser, source_help: str, tokenizer_help: str, *,
                        eval_docs: int, methods: list[str]) -> None:
    """The inputs every transfer benchmark shares (also used by benchmarks/decoder_transfer.py)."""
    parser.add_argument("--source", required=True, help=source_help)
    parser.add_argument("--tokenizer", required=True, help=tokenizer_help)
    parser.add_argument("--source-embeddings", required=True)
    parser.add_argument("--target-embeddings", required=True)
    parser.add_argument("--dictionary", required=True)
    parser.add_argument("--token-embeddings", required=True, help="token-level target fastText (focus)")
    parser.add_argument("--parallel", nargs=2, required=True)
    parser.add_argument("--alignment-table", help="prebuilt `langgraft resources align` table for transtok")
    parser.add_argument("--helper", help="helper model that uses the target tokenizer (clp; benchmarks/clp_helper.py)")
    parser.add_argument("--eval", help="held-out target text (one document per line)")
    parser.add_argument("--eval-docs", type=int, default=eval_docs, help="score the first N documents")
    parser.add_argument("--methods", nargs="+", default=methods)
    parser.add_argument("--calibrate-bias", metavar="TARGET_TEXT",
                        help="also calibrate the output bias on this target text, langgraft methods "
                             "(init --calibrate-bias) and packages alike")
    parser.add_argument("--package-path", nargs="+", default=[], metavar="DIR",
                        help="directories put first on the package processes' PYTHONPATH (where `wechsel`, "
                             "`deepfocus` and their dependencies are installed; default: the anchor environment "
                             "benchmarks/anchors.sh builds under benchmarks/.anchors, built on first use)")
    parser.add_argument("--out", required=True)


def run_methods(args: argparse.Namespace, score: Callable[[str, list[str]], dict]) -> tuple[dict, Path]:
    """Every ``--methods`` entry as a whole process into ``--out``, scored by ``score``; finished
    entries in ``results.json`` are kept, so an interrupted run continues. A method whose process
    fails is recorded with its error, not hidden: the table says which one failed and why."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    eval_texts = first_documents(args.eval, args.eval_docs)
    if "source-own-tokenizer" not in results:
        results["source-own-tokenizer"] = {"method": "source model, English tokenizer",
                                           **score(args.source, eval_texts)}
        results_path.write_text(json.dumps(results, indent=2))
    for method in args.methods:
        if method in results:
            continue
        checkpoint = out / method.replace(":", "-").replace("=", "-").replace(",", "-")
        log = out / f"{checkpoint.name}.log"  # not with_suffix: "share-0.5" would lose ".5" and share a log
        command = (package_command(method, args, checkpoint) if method in PACKAGES
                   else init_command(method, args, checkpoint))
        try:
            process = timed_process(command, log,
                                    package_environment(package_paths(args)) if method in PACKAGES else None)
        except RuntimeError as error:
            entry = {"method": method, "bpc": "failed", "error": str(error)}
        else:
            entry = {"method": method, **process, "coverage": coverage(checkpoint),
                     **score(str(checkpoint), eval_texts)}
            if method in PACKAGES:
                entry.update(json.loads(log.read_text().strip().splitlines()[-1]))
        results[method] = entry
        results_path.write_text(json.dumps(results, indent=2))
        print(json.dumps(entry), flush=True)
    return results, results_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_transfer_inputs(parser, "source MLM checkpoint (head recovered)", "target tokenizer dir", eval_docs=2000,
                        methods=[*LANGGRAFT_METHODS, *PACKAGES])
    parser.add_argument("--skip-computation", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the markdown table of --out/results.json")
    parser.add_argument("--run-package", choices=PACKAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_package:
        return run_package(args)
    if args.table:
        print(markdown(json.loads((Path(args.out) / "results.json").read_text())))
        return 0

    results, results_path = run_methods(args, score)
    if not args.skip_computation and "computation" not in results:
        sys.path[:0] = package_paths(args)
        results["computation"] = computation_only(args)
        results_path.write_text(json.dumps(results, indent=2))
        print(json.dumps(results["computation"]), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
