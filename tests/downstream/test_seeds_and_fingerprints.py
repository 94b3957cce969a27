"""Probe seeds folded into mean +- sd with the noise rule (s3prl.downstream.aggregate), the
fingerprints of corpus / features / checkpoint (s3prl.downstream.fingerprint) and what
results_table makes of them (--refresh, --compare)."""
from __future__ import annotations

import hashlib
import json
import math
import shutil

import kaldiio
import numpy as np
import pytest

from s3prl.bin import results_table
from s3prl.downstream import aggregate as A
from s3prl.downstream import fingerprint as F
from s3prl.downstream import results as R
from s3prl.errors import UserError

from ..conftest import write_data_dir, write_tiny_tera


def _rec(upstream, seed, dev, test, task="speaker", head="utterance", **kw):
    return {"task": task, "upstream": upstream, "layer": "last" if "/" not in upstream else "3", "head": head,
            "seed": seed, "dev_accuracy": dev / 100, "test_accuracy": test / 100, "best_step": 10, "steps": 20,
            "config_hash": f"h{seed}", "command": "c", **kw}


# ------------------------------------------------------------------------------- aggregation
def test_mean_sd_is_the_sample_sd():
    m, sd = A.mean_sd([40.0, 41.0, 45.0])
    assert m == 42.0 and sd == pytest.approx(math.sqrt(7.0))       # ((-2)^2 + (-1)^2 + 3^2) / (3 - 1)
    assert A.mean_sd([50.0]) == (50.0, None)
    assert A.cell([50.0, 52.0, 54.0]) == "52.00 +- 2.00 (n=3)"
    assert A.cell([43.53]) == "43.53 (n=1)"


def test_noise_rule_two_pooled_sd():
    pooled = A.pooled_sd(1.0, 3, 2.0, 3)
    assert pooled == pytest.approx(math.sqrt((2 * 1.0 + 2 * 4.0) / 4))   # 1.5811
    assert A.beyond_noise(3.17, pooled) is True                           # 2 x 1.5811 = 3.162
    assert A.beyond_noise(-3.17, pooled) is True
    assert A.beyond_noise(3.15, pooled) is False
    assert A.pooled_sd(1.0, 1, 2.0, 3) is None and A.beyond_noise(9.0, None) is None
    assert A.is_baseline("fbank") and A.is_baseline("fbank_uttcmvn") and not A.is_baseline("exp/tera_tiny")


def test_results_md_folds_seeds_and_compares_with_both_baselines(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nnotes\n")
    runs = [("fbank", [(1, 67.0, 70.0), (2, 68.0, 71.0), (3, 69.0, 72.0)]),          # test sd 1
            ("fbank_uttcmvn", [(1, 10.0, 11.0), (2, 12.0, 13.0), (3, 14.0, 15.0)]),  # test sd 2
            ("exp/tera_tiny", [(1, 40.0, 50.0), (2, 41.0, 52.0), (3, 45.0, 54.0)])]  # test sd 2
    for up, seeds in runs:
        for seed, dev, test in seeds:
            R.update_results_md(md, _rec(up, seed, dev, test), f"exp/downstream/speaker_{up}_seed{seed}")
    text = md.read_text()
    assert text.startswith("# Results\n\nnotes\n")
    assert len(R.parse_results_table(text)) == 9                                      # one row per run
    summary = R.parse_summary_table(text)
    by_up = {r[1]: r for r in summary}
    assert by_up["exp/tera_tiny"][4:7] == ["1,2,3", "42.00 +- 2.65 (n=3)", "52.00 +- 2.00 (n=3)"]
    assert by_up["fbank"][6] == "71.00 +- 1.00 (n=3)" and by_up["fbank"][7] == "baseline"
    # 52 - 71 = -19 against sqrt((2*1 + 2*4)/4) = 1.58; 52 - 13 = +39 against sd 2
    assert by_up["exp/tera_tiny"][7] == ("fbank: -19.00, beyond noise (2 x sd 1.58); "
                                         "fbank_uttcmvn: +39.00, beyond noise (2 x sd 2.00)")
    # a difference inside 2 pooled sd is called so; a row of one run has no noise estimate
    R.update_results_md(md, _rec("exp/apc_tiny", 1, 60.0, 70.5), "exp/a1")
    R.update_results_md(md, _rec("exp/apc_tiny", 2, 60.0, 73.5), "exp/a2")
    R.update_results_md(md, _rec("exp/mockingjay_tiny", 1, 60.0, 40.0), "exp/m1")
    summary = R.parse_summary_table(md.read_text())
    by_up = {r[1]: r for r in summary}
    # apc: mean 72.0 sd 2.1213 (n=2) vs fbank 71.0 sd 1 (n=3): pooled sqrt((4.5 + 2) / 3) = 1.47
    assert by_up["exp/apc_tiny"][7].startswith("fbank: +1.00, within noise (2 x sd 1.47)")
    assert by_up["exp/mockingjay_tiny"][7].startswith("fbank: -31.00, no noise estimate (n<2)")
    # a rerun of seed 2 replaces that seed's row only
    R.update_results_md(md, _rec("exp/tera_tiny", 2, 41.0, 58.0), "exp/downstream/speaker_exp/tera_tiny_seed2")
    rows = [r for r in R.parse_results_table(md.read_text()) if r[1] == "exp/tera_tiny"]
    assert [(r[4], r[6]) for r in rows] == [("1", "50.00"), ("2", "58.00"), ("3", "54.00")]


def test_old_table_read_by_its_header_and_refreshed(tmp_path, capsys):
    old = ("## Downstream classification\n\n" + R.BEGIN + "\n"
           "| task | upstream | layer | head | dev acc % | test acc % (best dev) | best step | steps | config | exp |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n"
           "| phone | fbank | last | linear | 43.75 | 43.53 | 500 | 1000 | 6fc4c69bc4 | exp/downstream/phone_linear_fbank |\n"
           + R.END + "\n\n## After\n")
    md = tmp_path / "RESULTS.md"
    md.write_text(old)
    assert R.parse_results_table(old) == [["phone", "fbank", "last", "linear", "-", "43.75", "43.53", "500", "1000",
                                          "6fc4c69bc4", "-", "exp/downstream/phone_linear_fbank"]]
    # the same run again (same exp dir, now with its seed): its old row is replaced, not doubled
    R.update_results_md(md, _rec("fbank", 1337, 43.75, 43.53, task="phone", head="linear"),
                        "exp/downstream/phone_linear_fbank")
    rows = R.parse_results_table(md.read_text())
    assert len(rows) == 1 and rows[0][4] == "1337"
    md.write_text(old)
    assert results_table.main(["--refresh", str(md)]) == 0
    text = md.read_text()
    assert "| task | upstream | layer | head | seed |" in text and R.SUMMARY_BEGIN in text
    assert text.endswith("## After\n")
    out = capsys.readouterr().out
    assert "| phone | fbank | last | linear | - | 43.75 (n=1) | 43.53 (n=1) | baseline |" in out
    # a header with a column we do not know is still an error naming the row
    md.write_text(old.replace("| config | exp |", "| config | bogus |"))
    with pytest.raises(UserError, match="has 10 cells, expected 12"):
        results_table.main([str(md)])


# ------------------------------------------------------------------------------- fingerprints
def _relocated_copy(src, dst):
    """`src` data dir copied to `dst` with wav.scp pointing at the copied audio."""
    shutil.copytree(src, dst)
    scp = dst / "wav.scp"
    scp.write_text(scp.read_text().replace(str(src.resolve()), str(dst.resolve())))
    return dst


def test_corpus_fingerprint_follows_the_audio_bytes_not_the_path(tmp_path):
    d = write_data_dir(tmp_path / "a" / "train")
    fp = F.fingerprints(F.Sources(dirs={"data": str(d)}, on_the_fly=True, upstream="fbank"))
    assert set(fp) == {"corpus", "features", "checkpoint"} and fp["checkpoint"] == "-"
    assert all(len(fp[k]) == 10 for k in ("corpus", "features"))
    assert F.fingerprints(F.Sources(dirs={"data": str(d)}, on_the_fly=True, upstream="fbank")) == fp
    copy = _relocated_copy(d, tmp_path / "elsewhere with space" / "train")
    assert F.fingerprints(F.Sources(dirs={"data": str(copy)}, on_the_fly=True, upstream="fbank")) == fp
    # one byte of one audio file: another corpus (and, on the fly, other features)
    wav = sorted((copy / "wav").glob("*.wav"))[1]
    data = bytearray(wav.read_bytes())
    data[-1] ^= 1
    wav.write_bytes(bytes(data))
    changed = F.fingerprints(F.Sources(dirs={"data": str(copy)}, on_the_fly=True, upstream="fbank"))
    assert changed["corpus"] != fp["corpus"] and changed["features"] != fp["features"]
    # a transcript edit too; a label file is part of the corpus when the task has labels
    other = _relocated_copy(d, tmp_path / "b" / "train")
    (other / "text").write_text((other / "text").read_text().replace("HELLO", "HALLO", 1))
    assert F.fingerprints(F.Sources(dirs={"data": str(other)}))["corpus"] != fp["corpus"]
    lab = tmp_path / "labels"
    lab.mkdir()
    (lab / "train_split.txt").write_text("x\n")
    with_labels = F.fingerprints(F.Sources(dirs={"data": str(d)}, labels=str(lab)))["corpus"]
    (lab / "train_split.txt").write_text("y\n")
    assert F.fingerprints(F.Sources(dirs={"data": str(d)}, labels=str(lab)))["corpus"] != with_labels


def test_each_audio_file_is_hashed_once_per_run(tmp_path, monkeypatch):
    d = write_data_dir(tmp_path / "train", utts_per_speaker=2)
    n_audio = len(list((d / "wav").glob("*.wav")))
    calls = []
    real = F.file_sha256
    monkeypatch.setattr(F, "file_sha256", lambda p: calls.append(str(p)) or real(p))
    # the ASR shape: three dirs naming the same audio
    F.fingerprints(F.Sources(dirs={"train": str(d), "dev": str(d), "test": str(d)}, on_the_fly=True, upstream="fbank"))
    audio_calls = [c for c in calls if c.endswith(".wav")]
    assert len(audio_calls) == n_audio == len(set(audio_calls))


def test_features_fingerprint_reads_ark_bytes_and_checkpoint_is_the_file_sha256(tmp_path):
    d = write_data_dir(tmp_path / "train")
    ark = tmp_path / "feats" / "raw.1.ark"
    ark.parent.mkdir()
    utts = [line.split()[0] for line in (d / "wav.scp").read_text().splitlines()]
    with kaldiio.WriteHelper(f"ark,scp:{ark},{d / 'feats.scp'}") as w:
        for k, u in enumerate(utts):
            w(u, np.full((5, 3), k, dtype=np.float32))
    fp = F.fingerprints(F.Sources(dirs={"data": str(d)}, upstream="fbank"))
    # moved elsewhere (arks too, feats.scp rewritten): the same features
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "feats", moved / "feats")
    copy = _relocated_copy(d, moved / "train")
    (copy / "feats.scp").write_text((copy / "feats.scp").read_text().replace(str(ark.parent), str(moved / "feats")))
    assert F.fingerprints(F.Sources(dirs={"data": str(copy)}, upstream="fbank")) == fp
    # one ark byte: other features, same corpus
    data = bytearray((moved / "feats" / "raw.1.ark").read_bytes())
    data[-1] ^= 1
    (moved / "feats" / "raw.1.ark").write_bytes(bytes(data))
    changed = F.fingerprints(F.Sources(dirs={"data": str(copy)}, upstream="fbank"))
    assert changed["corpus"] == fp["corpus"] and changed["features"] != fp["features"]
    # an upstream run on the fly: k is its checkpoint's tensor fingerprint, the same for the same
    # tensors saved under another name (whose file bytes differ: torch.save names the archive)
    ckpt = write_tiny_tera(tmp_path / "up" / "tera.ckpt")
    again = write_tiny_tera(tmp_path / "up2" / "other.ckpt")
    assert open(ckpt, "rb").read() != open(again, "rb").read()
    on_fly = F.fingerprints(F.Sources(dirs={"data": str(d)}, on_the_fly=True, upstream=ckpt))
    assert on_fly["checkpoint"] == F.checkpoint_fingerprint(again) != "-"
    assert on_fly["corpus"] == fp["corpus"]
    assert F.short(on_fly) == f"c:{fp['corpus'][:4]} f:{on_fly['features'][:4]} k:{on_fly['checkpoint'][:4]}"
    assert F.short(None) == "-"
    # dumped features: k is the tensor fingerprint of the checkpoint the dump recorded, "?" once
    # that file is replaced or gone
    from s3prl.atomic import file_sha256

    (d / "upstream.json").write_text(json.dumps({"path": ckpt, "sha256": file_sha256(ckpt), "layer": 2}))
    dumped = F.fingerprints(F.Sources(dirs={"data": str(d)}, upstream="exp/x"))
    assert dumped["checkpoint"] == on_fly["checkpoint"] and dumped["features"] == fp["features"]
    write_tiny_tera(ckpt, sequence_length=100)
    assert F.fingerprints(F.Sources(dirs={"data": str(d)}, upstream="exp/x"))["checkpoint"] == "?"
    (tmp_path / "up" / "tera.ckpt").unlink()
    assert F.fingerprints(F.Sources(dirs={"data": str(d)}, upstream="exp/x"))["checkpoint"] == "?"


def test_checkpoint_fingerprint_is_the_sha256_of_its_tensors(tmp_path):
    import torch

    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    b = torch.tensor([7], dtype=torch.int64)
    path = tmp_path / "states-5.ckpt"
    torch.save({"Transformer": {"w": w, "b": b}, "Optimizer": {"state": torch.ones(3)}, "Step": 5}, path)
    expect = hashlib.sha256()                      # key order: Transformer.b, Transformer.w
    expect.update(b"Transformer.b|torch.int64|(1,)|" + np.array([7], dtype=np.int64).tobytes())
    expect.update(b"Transformer.w|torch.float32|(2, 2)|" + w.numpy().tobytes())
    assert F.checkpoint_fingerprint(path) == expect.hexdigest()[:10]
    # the optimizer state is not the model: another one, the same fingerprint; one weight: another
    torch.save({"Transformer": {"w": w, "b": b}, "Optimizer": {"state": torch.zeros(3)}, "Step": 9}, path)
    assert F.checkpoint_fingerprint(path) == expect.hexdigest()[:10]
    w2 = w.clone()
    w2[0, 0] = 1.0000001
    torch.save({"Transformer": {"w": w2, "b": b}}, path)
    assert F.checkpoint_fingerprint(path) != expect.hexdigest()[:10]
    # an exp dir stands for its newest states-<step>.ckpt, as everywhere an upstream is named
    assert F.fingerprints(F.Sources(dirs={}, on_the_fly=True, upstream=str(tmp_path)))["checkpoint"] == \
        F.checkpoint_fingerprint(path)


def test_compare_tells_data_from_training(tmp_path, capsys):
    base = {"corpus": "aaaaaaaaaa", "features": "bbbbbbbbbb", "checkpoint": "cccccccccc"}
    assert F.compare(base, {**base, "corpus": "dddddddddd"}).startswith("different corpus")
    assert F.compare(base, {**base, "checkpoint": "dddddddddd", "features": "eeeeeeeeee"}).startswith(
        "same corpus, different checkpoint")
    assert F.compare(base, {**base, "features": "eeeeeeeeee"}).startswith("same corpus and checkpoint")
    assert "probe's own training" in F.compare(base, dict(base))
    assert F.compare(base, None).startswith("cannot tell")
    assert F.compare(base, {**base, "checkpoint": "?"}).startswith("same corpus; cannot tell about the checkpoint")
    a, b = tmp_path / "a", tmp_path / "b"
    R.write_results(a, _rec("exp/tera_tiny", 1, 40.0, 47.0, fingerprints=base))
    R.write_results(b, _rec("exp/tera_tiny", 1, 38.0, 40.0, fingerprints={**base, "checkpoint": "ffffffffff"}))
    assert results_table.main(["--compare", str(a), str(b / "results.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"A: {a}: speaker exp/tera_tiny (3) utterance seed 1: ")
    assert "test_accuracy=0.4700" in out[0] and "checkpoint cccccccccc" in out[1]
    assert out[-1].startswith("same corpus, different checkpoint")
    with pytest.raises(UserError, match="no such results.json"):
        results_table.main(["--compare", str(a), str(tmp_path / "none")])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="bad.json: not valid JSON"):
        results_table.main(["--compare", str(a), str(tmp_path / "bad.json")])


def test_a_run_records_seed_and_fingerprints(tmp_path):
    from s3prl.downstream.config import load_downstream_config
    from s3prl.downstream.task import RunInputs, run_downstream

    from .conftest import build_cpc

    fx = build_cpc(tmp_path / "cpc")
    fast = ["runner.total_steps=4", "runner.log_step=2", "runner.save_step=4", "runner.dev_step=2"]
    cfg = load_downstream_config(None, ["head.name=utterance", *fast, "runner.seed=2", "dataloader.seed=2"],
                                 task="speaker")
    md = tmp_path / "RESULTS.md"
    rec = run_downstream(cfg, RunInputs(str(fx.labels), feats_dir=str(fx.feats), upstream=None, name="feats_named"),
                         tmp_path / "exp", progress=False, results_md=md)
    on_disk = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert on_disk["seed"] == 2 and on_disk["data_seed"] == 2 and on_disk["upstream"] == "feats_named"
    expect = F.fingerprints(F.Sources(dirs={"data": str(fx.feats)}, labels=str(fx.labels)))
    assert on_disk["fingerprints"] == expect == rec["fingerprints"] and expect["checkpoint"] == "-"
    row = R.parse_results_table(md.read_text())[0]
    assert row[:5] == ["speaker", "feats_named", "last", "utterance", "2"] and row[10] == F.short(expect)
