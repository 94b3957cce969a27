"""`make bench`: run the performance benchmarks, print a table, write JSON (bench/README.md).

    python -m s3prl.bin.bench [--out bench/results] [--quick] [--only extraction,fbank,...]
        [--threads 2] [--ref-venv tools/bench-venv]

Benchmarks (s3prl.bench.*): extraction (ours fp32 / bf16 vs s3prl 0.4.18 tera_local), pretrain
(FLOP/s of a training step in fp32 and bf16 vs the matmul peak of its dtype), pretrain_ref (our step
vs s3prl 0.4.18's own pre-training step), fbank (batched vs per-utterance torchaudio), dump (peak RSS at
N and 4N utterances, ark write throughput vs kaldiio), scaling (cost per audio second vs length),
downstream (share of step time waiting for data). Each writes <out>/<name>.json; summary.json
holds all. --quick runs every benchmark at a minimal size (the smoke test). Timing is reported as
ratios measured side by side in this one run.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from s3prl.atomic import atomic_write_text
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

log = logging.getLogger("s3prl.bench")

NAMES = ("extraction", "pretrain", "pretrain_ref", "fbank", "dump", "scaling", "downstream")

# Full sizes keep `make bench` near 10 minutes on 2 idle cores; --quick is for the smoke test.
FULL = {
    "extraction": dict(num_utts=8, min_s=4.0, max_s=12.0, batch_sizes=(1, 8), size="base", rounds=2),
    # base at the recipe's crop length (tera_base.yaml max_timestep 1500), 2 utterances per step
    # and the demo's tera_tiny preset at its own batch (32 x 50-frame crops)
    "pretrain": dict(sizes=("base", "tera_tiny"), batch=2, frames=1500, repeats=2, peak_n=2048,
                     shapes={"tera_tiny": (32, 50)}),
    "pretrain_ref": dict(shapes=(("base", 2, 1500), ("tera_tiny", 32, 50)), repeats=2, rounds=2),
    "fbank": dict(num_utts=100, min_s=2.0, max_s=12.0, repeats=3),
    "dump": dict(n=10, seconds=4.0, size="wide1"),
    "ark": dict(num=200, frames=500, dim=768, repeats=3),
    "scaling": dict(lengths=(5, 10, 20, 40, 80), size="base", unchunked_max_s=20.0),
    "downstream": dict(num_utts=96, dim=768, batch_size=8, workers=(0, 2)),
}
QUICK = {
    "extraction": dict(num_utts=3, min_s=1.0, max_s=2.0, batch_sizes=(1, 2), size="tiny", check_utts=2,
                       rounds=1),
    "pretrain": dict(sizes=("tiny",), batch=2, frames=50, repeats=1, peak_n=256),
    "pretrain_ref": dict(shapes=(("tiny", 2, 50),), repeats=1, rounds=1),
    "fbank": dict(num_utts=4, min_s=0.5, max_s=1.5, repeats=1),
    "dump": dict(n=2, seconds=0.5, size="tiny"),
    "ark": dict(num=4, frames=20, dim=8, repeats=1),
    "scaling": dict(lengths=(1, 2), size="tiny", sequence_length=150, unchunked_max_s=2.0),
    "downstream": dict(num_utts=8, dim=16, min_frames=20, max_frames=40, batch_size=4, workers=(0,)),
}


def run_one(name: str, work: Path, sizes: dict, threads: int, ref_venv: Path | None) -> dict:
    import torch

    torch.set_num_threads(threads)
    if name == "extraction":
        from s3prl.bench.extraction import DEFAULT_REF_VENV, bench_extraction
        return bench_extraction(work / name, threads=threads, ref_venv=ref_venv or DEFAULT_REF_VENV,
                                **sizes[name])
    if name == "pretrain":
        from s3prl.bench.pretrain_flops import bench_pretrain
        return bench_pretrain(**sizes[name])
    if name == "pretrain_ref":
        from s3prl.bench.extraction import DEFAULT_REF_VENV
        from s3prl.bench.pretrain_ref import bench_pretrain_ref
        return bench_pretrain_ref(threads=threads, ref_venv=ref_venv or DEFAULT_REF_VENV, **sizes[name])
    if name == "fbank":
        from s3prl.bench.fbank import bench_fbank
        return bench_fbank(**sizes[name])
    if name == "dump":
        from s3prl.bench.dump_io import bench_ark_write, bench_dump_rss
        return {"rss": bench_dump_rss(work / name, **sizes["dump"]),
                "ark": bench_ark_write(work / name / "ark", **sizes["ark"])}
    if name == "scaling":
        from s3prl.bench.scaling import bench_scaling
        return bench_scaling(work / name, **sizes[name])
    if name == "downstream":
        from s3prl.bench.downstream import bench_downstream
        return bench_downstream(work / name, **sizes[name])
    raise UserError(f"--only: unknown benchmark '{name}' (valid: {', '.join(NAMES)})")


def _f(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def table(results: dict) -> str:
    """The human-readable summary, one line per measured ratio."""
    out = [f"{'benchmark':<34} {'measure':<44} {'value':>10}  target"]

    def line(b, m, v, target=""):
        out.append(f"{b:<34} {m:<44} {v:>10}  {target}")

    r = results.get("extraction")
    if r:
        if r.get("note"):
            out.append(f"extraction: NOTE {r['note']}")
        for row in r["rows"]:
            b = f"extract {r['model']} {row['device']} {row.get('dtype', 'float32')} bs={row['batch_size']}"
            line(b, "ours audio-s per s", _f(row["ours_audio_s_per_s"]))
            if "ours_over_first_batch_size" in row:
                line(b, "ours throughput / ours at the first batch size", _f(row["ours_over_first_batch_size"]) + "x",
                     ">= 1x")
            if "ours_speedup_over_float32" in row:
                line(b, "ours bf16 / ours fp32 throughput", _f(row["ours_speedup_over_float32"]) + "x")
            if "speedup" in row:
                line(b, "reference audio-s per s", _f(row["ref_audio_s_per_s"]))
                line(b, "speedup ours/reference (same batches)", _f(row["speedup"]) + "x",
                     ">= 2x" if row.get("dtype", "float32") == "float32" else ">= 5x")
                if "speedup_vs_corpus_order" in row:
                    line(b, "speedup vs reference in corpus order", _f(row["speedup_vs_corpus_order"]) + "x")
                line(b, "max |ours - reference| hidden states", _f(row["max_abs_diff"], ".1e"),
                     "<= 1e-4" if row.get("dtype", "float32") == "float32" else "")
    r = results.get("pretrain")
    if r:
        if r.get("note"):
            out.append(f"pretrain: NOTE {r['note']}")
        for d, v in (r.get("peak_gflops_by_dtype") or {"float32": r["peak_gflops"]}).items():
            line("pretrain", f"matmul peak GFLOP/s {d}", _f(v, ".1f"))
        if r.get("peak_bf16_over_fp32"):
            line("pretrain", "matmul peak bf16 / fp32", _f(r["peak_bf16_over_fp32"]) + "x")
        for row in r["rows"]:
            b = (f"pretrain {row['size']} B={row['batch']} T={row['frames']} attn-drop "
                 f"{row.get('attention_dropout', 0.1):g} {row.get('dtype', 'float32')}")
            line(b, "achieved GFLOP/s", _f(row["achieved_gflops"], ".1f"))
            line(b, "fraction of its dtype's matmul peak (step)", _f(100 * row["fraction_of_peak"], ".0f") + " %",
                 ">= 50 %" if row["size"] == "base" else "")
            line(b, "fraction of peak, fwd+bwd only", _f(100 * row["fwd_bwd_fraction_of_peak"], ".0f") + " %")
            line(b, "optimizer update share of step", _f(100 * row["optimizer_share"], ".0f") + " %")
            if "autograd_saved_mib" in row:
                line(b, "activation memory kept for backward (MiB)", _f(row["autograd_saved_mib"], ".0f"))
            if "recipe_update_fraction_of_peak" in row:
                line(f"pretrain {row['size']} recipe {row['recipe_batch']}x{row['frames']}x{row['recipe_accumulation']}"
                     f" attn-drop {row.get('attention_dropout', 0.1):g} {row.get('dtype', 'float32')}",
                     "fraction of peak per update (fb + update)",
                     _f(100 * row["recipe_update_fraction_of_peak"], ".0f") + " %", ">= 50 %")
            top = ", ".join(f"{o['op']} {100 * o['self_share']:.0f}%" for o in row["top_ops"][:4])
            out.append(f"    top ops: {top}")
        for x in r.get("bf16_over_fp32", []):
            b = f"pretrain {x['size']} attn-drop {x['attention_dropout']:g}"
            line(b, "step time fp32 / bf16 (same run)", _f(x["step_speedup"]) + "x", ">= 3x")
            line(b, "fwd+bwd time fp32 / bf16", _f(x["fwd_bwd_speedup"]) + "x")
    r = results.get("pretrain_ref")
    if r:
        if r.get("note"):
            out.append(f"pretrain_ref: NOTE {r['note']}")
        for row in r["rows"]:
            b = f"pretrain step {row['size']} B={row['batch']} T={row['frames']} {row['dtype']}"
            line(b, "ours step seconds", _f(row["ours_step_seconds"], ".3f"))
            if "speedup" in row:
                line(b, "s3prl 0.4.18 step / ours (same run)", _f(row["speedup"]) + "x",
                     ">= 2x" if row["dtype"] == "float32" else ">= 5x")
    r = results.get("fbank")
    if r:
        line(f"fbank {r['num_utts']} utts", "speedup batched/per-utt loop", _f(r["speedup"]) + "x", ">= 1x")
        line(f"fbank {r['num_utts']} utts", "max |diff| vs torchaudio loop", _f(r["max_abs_diff"], ".1e"))
    r = results.get("dump")
    if r:
        s = r["rss"]
        line(f"dump N={s['n']} vs 4N", "peak RSS MB (N / 4N)", f"{s['rss_mb_n']:.0f}/{s['rss_mb_4n']:.0f}")
        line(f"dump N={s['n']} vs 4N", "RSS ratio 4N/N", _f(s["rss_ratio"], ".3f"), "<= 1.10")
        a = r["ark"]
        line(f"ark write {a['megabytes']:.0f} MB", "throughput ArkWriter/kaldiio", _f(a["ratio"]), ">= 0.8")
        line(f"ark write {a['megabytes']:.0f} MB", "throughput ArkWriter/kaldiio+fsync", _f(a["ratio_vs_kaldiio_fsync"]),
             ">= 0.8")
    r = results.get("scaling")
    if r:
        for row in r["rows"]:
            v = _f(row.get("chunked_ms_per_audio_s"), ".0f")
            u = row.get("unchunked_ms_per_audio_s")
            line(f"scaling {r['model']} {row['seconds']} s", "ms per audio-s chunked (unchunked)",
                 v + (f" ({u:.0f})" if u is not None else ""))
    r = results.get("downstream")
    if r:
        for row in r["rows"]:
            line(f"downstream linear, workers={row['num_workers']}", "data-wait share of step time",
                 _f(100 * row["wait_share"], ".1f") + " %", "< 20 %")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m s3prl.bin.bench", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench/results", help="directory for the JSON results")
    p.add_argument("--quick", action="store_true", help="minimal sizes (smoke test), seconds not minutes")
    p.add_argument("--only", default=",".join(NAMES), help=f"comma list of: {', '.join(NAMES)}")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every side")
    p.add_argument("--ref-venv", default=None, help="venv with s3prl 0.4.18 (default tools/bench-venv)")
    p.add_argument("--work", default=None, help="scratch dir (default: a temporary dir, removed)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in NAMES]
    if bad:
        raise UserError(f"--only: unknown benchmark '{bad[0]}' (valid: {', '.join(NAMES)})")
    if args.threads < 1:
        raise UserError(f"--threads: must be >= 1, got {args.threads}")
    sizes = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if len(names) < len(NAMES) and (out / "summary.json").is_file():
        try:  # a partial run (--only) updates the last full summary
            results = {k: v for k, v in json.loads((out / "summary.json").read_text()).items() if k != "_meta"}
        except ValueError:
            results = {}
    with tempfile.TemporaryDirectory(prefix="s3prl-bench-", dir=args.work) as tmp:
        for name in names:
            t0 = time.perf_counter()
            log.info("benchmark %s ...", name)
            res = run_one(name, Path(tmp), sizes, args.threads, Path(args.ref_venv) if args.ref_venv else None)
            res["wall_seconds"] = time.perf_counter() - t0
            results[name] = res
            atomic_write_text(out / f"{name}.json", json.dumps(res, indent=1) + "\n")
    results["_meta"] = {"quick": args.quick, "threads": args.threads, "last_run": names,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(out / "summary.json", json.dumps(results, indent=1) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    cli_main(main)
