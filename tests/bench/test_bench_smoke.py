"""Smoke test of `make bench`: every benchmark runs at its --quick size and writes finite JSON.

No timing is asserted (timings belong to the benchmark output, not to tests); the numerical
checks the benchmarks themselves make (identical fbank, flat RSS inputs) are asserted loosely.
"""
from __future__ import annotations

import json
import math

import pytest

from s3prl.bench.common import synth_corpus
from s3prl.bench.extraction import sorted_batches
from s3prl.bench.pretrain_flops import step_flops
from s3prl.bin import bench
from s3prl.errors import UserError


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(float(x))


def test_step_flops_counts_by_hand():
    # B=1, T=2, H=4, I=8, L=1, in=3, out=5: input 2*2*3*4=48; QKVO 2*2*4*4*4=256; attn 2*2*1*2*2*4=64;
    # FFN 2*2*2*4*8=256; head 2*2*4*4 + 2*2*4*5 = 64 + 80 -> forward 768, step 3x.
    fl = step_flops(1, 2, 4, 8, 1, 3, 5)
    assert fl["forward"] == 768 and fl["step"] == 3 * 768


def test_corpus_is_deterministic_and_batches_sorted():
    a, b = synth_corpus(5, 1.0, 2.0, seed=3), synth_corpus(5, 1.0, 2.0, seed=3)
    assert all((x == y).all() for x, y in zip(a, b))
    assert sorted(len(x) for x in a) == [16000, 20000, 24000, 28000, 32000]
    batches = sorted_batches(a, 2)
    flat = [i for bt in batches for i in bt]
    assert sorted(flat) == list(range(5)) and [len(bt) for bt in batches] == [2, 2, 1]
    assert [len(a[i]) for i in flat] == sorted((len(x) for x in a), reverse=True)


def test_quick_run_writes_finite_json(tmp_path, capsys):
    out = tmp_path / "results"
    assert bench.main(["--quick", "--out", str(out), "--ref-venv", str(tmp_path / "no-venv"),
                       "--work", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "install_bench_reference.sh" in printed and "data-wait share" in printed
    s = json.loads((out / "summary.json").read_text())
    for name in bench.NAMES:
        assert json.loads((out / f"{name}.json").read_text()) == s[name]
        assert _finite(s[name]["wall_seconds"])
    ex = s["extraction"]
    assert ex["reference"] is None and "note" in ex
    from s3prl.precision import cpu_supports_bf16

    dtypes = ["float32", "bfloat16"] if cpu_supports_bf16() else ["float32"]
    assert [(r["dtype"], r["batch_size"]) for r in ex["rows"]] == [(d, b) for d in dtypes for b in (1, 2)]
    assert all(_finite(r["ours_audio_s_per_s"]) and r["ours_audio_s_per_s"] > 0 for r in ex["rows"])
    assert all(_finite(r["ours_over_first_batch_size"]) for r in ex["rows"] if r["batch_size"] == 2)
    assert all(_finite(r["ours_speedup_over_float32"]) for r in ex["rows"] if r["dtype"] == "bfloat16")
    pt = s["pretrain"]
    assert _finite(pt["peak_gflops"]) and pt["peak_gflops"] > 0
    assert sorted(pt["peak_gflops_by_dtype"]) == sorted(dtypes)
    # the presets' attention dropout and the fused-kernel setting, each in every dtype
    assert [(r["attention_dropout"], r["dtype"]) for r in pt["rows"]] == [(p, d) for p in (0.1, 0.0) for d in dtypes]
    assert [(x["size"], x["attention_dropout"]) for x in pt["bf16_over_fp32"]] == \
        ([("tiny", 0.1), ("tiny", 0.0)] if len(dtypes) == 2 else [])
    assert all(_finite(x["step_speedup"]) for x in pt["bf16_over_fp32"])
    for r in pt["rows"]:
        assert all(_finite(r[k]) for k in ("step_seconds", "step_gflop", "achieved_gflops", "fraction_of_peak",
                                           "fwd_bwd_fraction_of_peak", "optimizer_share", "autograd_saved_mib"))
        assert 0 <= r["optimizer_share"] <= 1 and 0 < r["recipe_optimizer_share"] < r["optimizer_share"]
        assert _finite(r["recipe_update_fraction_of_peak"]) and r["recipe_update_fraction_of_peak"] > 0
        assert r["top_ops"] and all(0 <= o["self_share"] <= 1 for o in r["top_ops"])
    pr = s["pretrain_ref"]
    assert pr["reference"] is None and "note" in pr
    assert [r["dtype"] for r in pr["rows"]] == dtypes and all(_finite(r["ours_step_seconds"]) for r in pr["rows"])
    fb = s["fbank"]
    assert fb["same_shapes"] and fb["max_abs_diff"] <= 1e-3 and _finite(fb["speedup"])
    d = s["dump"]
    assert d["rss"]["rss_mb_n"] > 0 and _finite(d["rss"]["rss_ratio"])
    assert d["ark"]["identical_ark"] and _finite(d["ark"]["ratio"]) and _finite(d["ark"]["ratio_vs_kaldiio_fsync"])
    sc = s["scaling"]
    assert [r["seconds"] for r in sc["rows"]] == [1, 2]
    assert all(_finite(r["chunked_ms_per_audio_s"]) for r in sc["rows"])
    ds = s["downstream"]["rows"][0]
    assert ds["batches"] == 2 and 0 <= ds["wait_share"] <= 1


def test_unknown_benchmark_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--only: unknown benchmark 'nope'"):
        bench.main(["--quick", "--only", "nope", "--out", str(tmp_path)])


def test_kaldi_style_cmvn_matches_s3prl_extracter():
    # Today's S3PRL Kaldi-style extracter normalises by (1e-10 + unbiased std); our fbank with
    # per-utterance CMVN must give the same features, or tera_local disagrees (bench extraction).
    import torch
    import torchaudio.compliance.kaldi as ta_kaldi

    from s3prl.features import compute_features
    from s3prl.features.config import FeatureConfig

    w = torch.from_numpy(synth_corpus(1, 1.0, 1.0, seed=7)[0])
    ours = compute_features(w, FeatureConfig(feat_type="fbank", num_mel_bins=80, per_utt_cmvn=True))
    x = ta_kaldi.fbank(w.view(1, -1), sample_frequency=16000, num_mel_bins=80, frame_length=25.0,
                       frame_shift=10.0, dither=0.0, use_log_fbank=True, use_energy=False)
    ref = (x - x.mean(0, keepdim=True)) / (1e-10 + x.std(0, keepdim=True))
    assert ours.shape == ref.shape == (98, 80)
    assert float((ours - ref).abs().max()) < 1e-4
