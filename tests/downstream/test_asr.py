"""Tests of the CTC ASR downstream: tokenizer, greedy decoding, head, end-to-end training on
synthetic features that spell their transcripts, output files, bad inputs, shipped configs."""
from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from torch import nn
import yaml

from s3prl.data.kaldi_dir import read_kv
from s3prl.downstream.asr import (ASR_TABLE, AsrConfig, AsrInputs, BiLSTMConfig, BiLSTMCTCHead, collate_ctc,
                                  ctc_greedy_decode, ctc_min_frames, downsample, load_asr_config, run_asr)
from s3prl.downstream.results import parse_results_table
from s3prl.downstream.scoring import read_summary
from s3prl.downstream.tokenizer import BLANK_ID, Tokenizer, TokenizerConfig, train_tokenizer
from s3prl.errors import UserError
from s3prl.upstream.hub import load_upstream
from tests.conftest import write_tiny_tera

REPO = Path(__file__).resolve().parents[2]
LEXICON = ("AB", "CAD", "BE", "DEC", "EAB", "CE")


# ------------------------------------------------------------------------------------ fixtures
def write_spelled_dir(d: Path, n_utts: int, seed: int, dim: int = 10, noise: float = 0.25,
                      spk_prefix: str = "100", text_override: dict | None = None) -> dict:
    """A data dir whose features spell the transcript: per unit (word boundary '_' or a letter) a
    run of 2-4 frames of that unit's mean vector plus noise. Returns utt -> transcript."""
    rng = np.random.default_rng(seed)
    means_rng = np.random.default_rng(123)   # the same unit means in every split
    units = "_ABCDE"
    means = {u: means_rng.normal(0, 1.5, dim) for u in units}
    d.mkdir(parents=True, exist_ok=True)
    texts, feats, utt2spk = {}, {}, {}
    for i in range(n_utts):
        spk = f"{spk_prefix}{i % 2}"
        utt = f"{spk}-1-{i:04d}"
        words = [LEXICON[int(rng.integers(len(LEXICON)))] for _ in range(int(rng.integers(2, 4)))]
        frames = []
        for w in words:
            for u in "_" + w:
                frames += [means[u] + rng.normal(0, noise, dim) for _ in range(int(rng.integers(2, 5)))]
        feats[utt] = np.asarray(frames, dtype=np.float32)
        texts[utt] = " ".join(words)
        utt2spk[utt] = spk
    if text_override:
        texts.update(text_override)
    keys = sorted(texts, key=str.encode)
    with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as w:
        for u in keys:
            w(u, feats[u])
    (d / "text").write_text("".join(f"{u} {texts[u]}\n" for u in keys))
    (d / "utt2spk").write_text("".join(f"{u} {utt2spk[u]}\n" for u in keys))
    spks = sorted(set(utt2spk.values()))
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(u for u in keys if utt2spk[u] == s)}\n" for s in spks))
    (d / "utt2num_frames").write_text("".join(f"{u} {len(feats[u])}\n" for u in keys))
    return texts


@pytest.fixture(scope="module")
def spelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr")
    write_spelled_dir(root / "train", 48, seed=1)
    write_spelled_dir(root / "dev", 8, seed=2, spk_prefix="200")
    write_spelled_dir(root / "test", 8, seed=3, spk_prefix="300")
    return root


def tiny_cfg(**over) -> AsrConfig:
    o = [f"{k}={v}" for k, v in {
        "model.hidden_size": 48, "model.dropout": 0.0, "optimizer.lr": 0.01, "runner.total_steps": 60,
        "runner.log_step": 20, "runner.save_step": 30, "runner.dev_step": 20, "dataloader.batch_size": 8,
        "dataloader.dev_batch_size": 8, **over}.items()]
    return load_asr_config(None, o)


@pytest.fixture(scope="module")
def one_thread():
    # Two intra-op threads on a loaded 2-core machine make small LSTMs 10-30x slower (spinning
    # OpenMP workers); one thread keeps the training test at a few seconds.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(spelled, tmp_path_factory, one_thread):
    exp = tmp_path_factory.mktemp("exp") / "asr_spelled"
    md = exp.parent / "RESULTS.md"
    inputs = AsrInputs(train=str(spelled / "train"), dev=str(spelled / "dev"), test=str(spelled / "test"),
                       upstream="spelled")
    rec = run_asr(tiny_cfg(), inputs, exp, results_md=md, command="test", progress=False)
    return exp, md, rec, inputs


# ----------------------------------------------------------------------------------- tokenizer
def test_char_tokenizer_round_trip_and_units():
    tok = train_tokenizer(["HELLO WORLD", "IT'S A  TEST"], TokenizerConfig("char"))
    assert tok.pieces()[:3] == ["<blank>", "<unk>", "▁"]
    assert set(tok.pieces()[3:]) == set("HELOWRDIT'SA")
    assert tok.vocab_size == 3 + 12
    for text in ("HELLO WORLD", "A TEST", "IT'S"):
        ids = tok.encode(text)
        assert min(ids) >= 2 and tok.decode(ids) == text
    assert tok.decode(tok.encode("  HELLO   TEST ")) == "HELLO TEST"      # whitespace normalised
    assert tok.decode([0, 0]) == ""


def test_bpe_tokenizer_round_trip_save_load(tmp_path):
    lines = ["THE CAT SAT ON THE MAT", "THE DOG SAT", "A CAT AND A DOG"] * 4
    tok = train_tokenizer(lines, TokenizerConfig("bpe", vocab_size=40))
    assert 4 < tok.vocab_size <= 40
    again = train_tokenizer(lines, TokenizerConfig("bpe", vocab_size=40))
    assert again.proto == tok.proto                                   # deterministic
    path = tok.save(tmp_path / "tokenizer.model")
    loaded = Tokenizer(path)
    for text in lines[:3] + ["MAT CAT"]:
        ids = loaded.encode(text)
        assert ids == tok.encode(text) and loaded.decode(ids) == text
    assert len(tok.encode("THE CAT")) < len("THE CAT")                # merged pieces


def test_tokenizer_unknown_characters_name_the_utterance():
    tok = train_tokenizer(["ABC AB"], TokenizerConfig("char"))
    with pytest.raises(UserError) as e:
        tok.encode("AB XYX", utt="103-1-0002", where="data/dev/text")
    msg = str(e.value)
    assert "data/dev/text" in msg and "103-1-0002" in msg and "'X'" in msg and "'Y'" in msg
    assert "\n" not in msg
    with pytest.raises(UserError, match="no transcripts"):
        train_tokenizer(["", "  "], TokenizerConfig("char"))


def test_required_chars_join_the_unit_set():
    tok = train_tokenizer(["ABC AB"], TokenizerConfig("char", required_chars="QZ'"))
    assert tok.vocab_size == 3 + 6
    assert tok.decode(tok.encode("QZ CAB'")) == "QZ CAB'"
    with pytest.raises(UserError, match="'X'"):
        tok.encode("AX")


def test_tokenizer_rejects_foreign_model(tmp_path):
    p = tmp_path / "x.model"
    p.write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a sentencepiece model"):
        Tokenizer(p)


# ------------------------------------------------------------------------------ decoding / head
def test_ctc_greedy_decode_hand_made_posterior():
    # frames' argmax: 2 2 0 2 3 3 0 0 4 | padding (ignored)
    path = [2, 2, 0, 2, 3, 3, 0, 0, 4, 4, 4]
    logits = torch.full((2, 11, 5), -5.0)
    for t, k in enumerate(path):
        logits[0, t, k] = 1.0
    logits[1, :, 0] = 1.0          # all blank
    logits[1, 2, 3] = 2.0          # one unit
    out = ctc_greedy_decode(logits, torch.tensor([9, 11]))
    assert out == [[2, 2, 3, 4], [3]]
    assert ctc_min_frames([2, 2, 3, 4]) == 5 and ctc_min_frames([]) == 0


def test_downsample_concat_and_drop():
    x = torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    lengths = torch.tensor([5, 3])
    y, n = downsample(x, lengths, 2, "concat")
    assert y.shape == (2, 3, 4) and n.tolist() == [3, 2]
    assert y[0, 0].tolist() == [0, 1, 2, 3] and y[0, 2].tolist() == [8, 9, 0, 0]
    y, n = downsample(x, lengths, 2, "drop")
    assert y.shape == (2, 3, 2) and y[0, 1].tolist() == [4, 5] and n.tolist() == [3, 2]


def test_head_padding_does_not_change_valid_outputs():
    torch.manual_seed(0)
    head = BiLSTMCTCHead(6, 9, BiLSTMConfig(hidden_size=8, dropout=0.0, subsampling=2)).eval()
    a = torch.randn(1, 7, 6)
    padded = torch.cat([a, torch.randn(1, 5, 6)], dim=1)
    ya = head(a, torch.tensor([7]))
    yp = head(padded, torch.tensor([7]))
    assert ya.shape == (1, 4, 9) and yp.shape == (1, 6, 9)
    assert torch.allclose(ya[0], yp[0, :4], atol=1e-6)
    assert head.output_lengths(torch.tensor([7, 8, 1])).tolist() == [4, 4, 1]


@pytest.mark.parametrize("train", [False, True])
def test_head_bilstm_equals_packed_sequences(train):
    """The direction-by-direction BiLSTM on the padded batch is nn.LSTM on packed sequences: mixed
    lengths, garbage (not zero) padding, outputs and parameter gradients equal to float rounding,
    padded outputs exactly zero."""
    torch.manual_seed(1)
    head = BiLSTMCTCHead(5, 7, BiLSTMConfig(hidden_size=6, num_layers=2, dropout=0.0)).train(train)
    lengths = torch.tensor([9, 4, 1, 9])
    x = torch.randn(4, 9, 5)   # frames past a length are random: they must not matter
    weights = torch.randn(4, 9, 12)

    def grads(h):
        head.zero_grad()
        (h * weights).sum().backward()
        return [p.grad.clone() for p in head.lstm.parameters()]

    ours = head._bilstm(x, lengths)
    g_ours = grads(ours)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref, _ = nn.utils.rnn.pad_packed_sequence(head.lstm(packed)[0], batch_first=True, total_length=9)
    g_ref = grads(ref)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert ours[1, 4:].abs().sum() == 0 and ours[2, 1:].abs().sum() == 0
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_collate_pads_targets():
    b = collate_ctc([{"utt": "a", "feats": torch.ones(4, 2), "tokens": torch.tensor([3, 4, 5])},
                     {"utt": "b", "feats": torch.ones(2, 2), "tokens": torch.tensor([6])}])
    assert b.feats.shape == (2, 4, 2) and b.lengths.tolist() == [4, 2]
    assert b.targets.tolist() == [[3, 4, 5], [6, 0, 0]] and b.target_lengths.tolist() == [3, 1]
    assert BLANK_ID == 0


# ---------------------------------------------------------------------------------- end to end
def test_training_learns_spelled_features(trained):
    exp, md, rec, inputs = trained
    # An untrained model emits (almost) nothing: WER starts at 100 %. 60 steps must get far below.
    assert rec["dev_wer"] < 40.0 and rec["test_wer"] < 40.0, rec
    assert rec["test_cer"] < 25.0, rec
    assert rec["task"] == "asr" and rec["head"] == "bilstm" and rec["upstream"] == "spelled"
    assert rec["units"] == "char8"     # <blank> <unk> ▁ A B C D E
    assert 20 <= rec["best_step"] <= 60 and rec["steps"] == 60
    hist = json.loads((exp / "results.json").read_text())
    assert hist["dev_wer"] == rec["dev_wer"]
    # The same model untrained (fixed seed) scores about 100 % WER on dev.
    from s3prl.downstream.asr import _loader, build_asr_run

    torch.manual_seed(0)
    task, datasets, _ = build_asr_run(tiny_cfg(), inputs, exp)
    task.model.eval()
    untrained = task.evaluate(task.model, _loader(datasets["dev"], 8, tiny_cfg()))
    assert untrained["wer"] >= 90.0 and untrained["wer"] - rec["dev_wer"] >= 60.0
    # best-dev selection: WER, ties broken by CER
    assert untrained["selection"] == pytest.approx(untrained["wer"] + 1e-6 * untrained["cer"])
    assert task.best_metric == "selection" and task.metric_mode == "min"


def test_output_files_kaldi_format(trained, spelled):
    exp, md, rec, inputs = trained
    assert (exp / "tokenizer.model").is_file() and (exp / "best-dev.ckpt").is_file()
    assert (exp / "learning_curve.png").stat().st_size > 0
    for split, name in (("dev", "decode_dev"), ("test", "decode_test")):
        d = exp / name
        ref = read_kv(d / "ref.txt", allow_empty_value=True)
        hyp = read_kv(d / "hyp.txt", allow_empty_value=True)
        assert ref == read_kv(spelled / split / "text")
        assert list(hyp) == sorted(ref, key=str.encode)
        raw = (d / "hyp.txt").read_text()
        assert raw.endswith("\n") and all(line.split(" ", 1)[0] in ref for line in raw.splitlines())
        wer, errors, nref, ins, dels, sub = read_summary(d / "wer")
        assert nref == sum(len(t.split()) for t in ref.values()) and errors == ins + dels + sub
        assert wer == pytest.approx(round(rec[f"{split}_wer"], 2), abs=0.006)
        cer = read_summary(d / "cer")
        assert cer[0] == pytest.approx(round(rec[f"{split}_cer"], 2), abs=0.006)
        lines = (d / "wer").read_text().splitlines()
        assert lines[0].startswith("%WER ") and lines[1].startswith("%SER ")
        assert lines[2] == f"Scored {len(ref)} sentences, 0 not present in hyp."
        first = sorted(ref, key=str.encode)[0]
        assert any(line.startswith(f"{first} ref ") for line in lines)
        assert any(line.startswith(f"{first} #csid ") for line in lines)
    rows = parse_results_table(md.read_text(), spec=ASR_TABLE)
    assert len(rows) == 1 and rows[0][:5] == ["asr", "spelled", "-", "bilstm", "char8"]
    assert rows[0][7] == f"{rec['test_wer']:.2f}"
    # the shared runner's seed and fingerprints (the three dirs' corpus and feats; no checkpoint)
    from s3prl.downstream.fingerprint import Sources, fingerprints, short

    assert rec["seed"] == 1337 and rec["fingerprints"]["checkpoint"] == "-"
    assert rec["fingerprints"] == fingerprints(inputs.fingerprint_sources())
    assert rows[0][-2] == short(rec["fingerprints"]) and rec["fingerprints"]["corpus"] != fingerprints(
        Sources(dirs={"train": inputs.train}))["corpus"]


def test_rerun_is_skipped_and_other_config_refused(trained):
    exp, md, rec, inputs = trained
    again = run_asr(tiny_cfg(), inputs, exp, results_md=None, progress=False)
    assert again["skipped"] and again["test_wer"] == rec["test_wer"]
    with pytest.raises(UserError, match="another config"):
        run_asr(tiny_cfg(**{"optimizer.lr": 0.02}), inputs, exp, progress=False)


def test_run_from_before_a_key_existed_counts_as_complete(trained, tmp_path):
    # An exp dir written before dataloader.delta_order existed holds its default (0): a rerun is
    # the same config and skips; asking for deltas, or a stored key this version lacks, is another.
    import shutil

    from s3prl.downstream.results import config_hash

    exp, _, rec, inputs = trained
    old = tmp_path / "old"
    shutil.copytree(exp, old)
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    del cfg["dataloader"]["delta_order"], cfg["dataloader"]["delta_window"]
    # ... and before model.downsample_rate/downsample_style became subsampling/subsampling_style
    cfg["model"] = {{"subsampling": "downsample_rate", "subsampling_style": "downsample_style"}.get(k, k): v
                    for k, v in cfg["model"].items()}
    assert "downsample_rate" in cfg["model"]
    text = yaml.safe_dump(cfg, sort_keys=False)
    (old / "config.yaml").write_text(text)
    res = json.loads((old / "results.json").read_text())
    res["config_hash"] = config_hash(text)
    (old / "results.json").write_text(json.dumps(res))
    again = run_asr(tiny_cfg(), inputs, old, results_md=None, progress=False)
    assert again["skipped"] and again["test_cer"] == rec["test_cer"]
    with pytest.raises(UserError, match="another config"):
        run_asr(tiny_cfg(**{"dataloader.delta_order": 1}), inputs, old, progress=False)
    cfg["dataloader"]["frobnicate"] = 1
    (old / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(UserError, match="another config"):
        run_asr(tiny_cfg(), inputs, old, progress=False)


def test_same_seed_same_result_whatever_the_global_rng(spelled, tmp_path, one_thread):
    # The head's initial weights come from runner.seed: a different global RNG state before the
    # run (another process, other work before it) must not change the weights or the WER.
    inputs = AsrInputs(train=str(spelled / "train"), dev=str(spelled / "dev"), test=str(spelled / "test"),
                       upstream="spelled")
    cfg = tiny_cfg(**{"runner.total_steps": 20, "runner.save_step": 20})
    recs, ckpts = [], []
    for k in (1, 2):
        torch.manual_seed(k)
        recs.append(run_asr(cfg, inputs, tmp_path / f"exp{k}", progress=False))
        ckpts.append(torch.load(tmp_path / f"exp{k}" / "states-20.ckpt", weights_only=True))
    assert recs[0]["dev_cer"] == recs[1]["dev_cer"] and recs[0]["test_cer"] == recs[1]["test_cer"]
    sa, sb = ckpts[0]["model"], ckpts[1]["model"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_selection_by_cer(spelled, tmp_path, one_thread):
    # selection: cer picks the checkpoint of the lowest dev CER (the learning curve then shows CER)
    inputs = AsrInputs(train=str(spelled / "train"), dev=str(spelled / "dev"), test=str(spelled / "test"),
                       upstream="spelled")
    rec = run_asr(tiny_cfg(**{"selection": "cer", "runner.dev_step": 10, "runner.save_step": 10,
                              "runner.total_steps": 40}), inputs, tmp_path / "exp", progress=False)
    assert rec["selection"] == "cer"
    hist = torch.load(tmp_path / "exp" / "states-40.ckpt", weights_only=True)["dev_history"]
    cers = {int(s): v for s, v in hist}
    assert len(cers) == 4 and rec["best_step"] == min(cers, key=lambda s: (cers[s], s))
    assert rec["dev_cer"] == pytest.approx(100 * cers[rec["best_step"]], abs=1e-6)
    with pytest.raises(Exception, match="selection"):
        tiny_cfg(selection="loss")


def test_deltas_widen_the_recognizer_input(spelled, tmp_path, one_thread):
    # dataloader.delta_order: Kaldi add-deltas on the normalised frames read from feats.scp; the
    # head's input doubles (10 -> 20 dims, x 2 stacked frames) and the run still learns.
    inputs = AsrInputs(train=str(spelled / "train"), dev=str(spelled / "dev"), test=str(spelled / "test"),
                       upstream="spelled")
    cfg = tiny_cfg(**{"dataloader.delta_order": 1, "model.subsampling": 2})
    rec = run_asr(cfg, inputs, tmp_path / "exp", progress=False)
    w = torch.load(tmp_path / "exp" / "states-60.ckpt", weights_only=True)["model"]["head.lstm.weight_ih_l0"]
    assert w.shape == (4 * 48, 20 * 2)
    assert rec["dev_cer"] < 60.0
    assert yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())["dataloader"]["delta_order"] == 1
    with pytest.raises(Exception, match="delta_order"):
        tiny_cfg(**{"dataloader.delta_order": -1})


def test_deltas_of_on_the_fly_upstream_states(tmp_path, make_data_dir, one_thread):
    # on the fly the deltas are taken of the upstream's states (as of dumped states), not of its
    # input: the recognizer reads 32 x 2 dims per frame
    ckpt = tiny_tera(tmp_path / "tera.ckpt")
    d = make_data_dir(tmp_path / "train", speakers=("1001",), utts_per_speaker=2)
    inputs = AsrInputs(train=str(d), dev=str(d), test=str(d), upstream=ckpt, on_the_fly=True)
    over = {"dataloader.delta_order": 1, "dataloader.cmvn": "utterance", "runner.total_steps": 2,
            "runner.dev_step": 2, "runner.save_step": 2, "model.subsampling": 1}
    run_asr(tiny_cfg(**over), inputs, tmp_path / "exp", progress=False)
    w = torch.load(tmp_path / "exp" / "states-2.ckpt", weights_only=True)["model"]["head.lstm.weight_ih_l0"]
    assert w.shape == (4 * 48, 32 * 2)


# ---------------------------------------------------------------------------------- bad inputs
def test_dev_text_outside_unit_set(spelled, tmp_path):
    bad = tmp_path / "dev_bad"
    write_spelled_dir(bad, 4, seed=5, spk_prefix="400", text_override={"4001-1-0001": "AB XQ"})
    inputs = AsrInputs(train=str(spelled / "train"), dev=str(bad), test=str(spelled / "test"))
    with pytest.raises(UserError) as e:
        run_asr(tiny_cfg(), inputs, tmp_path / "exp", progress=False)
    msg = str(e.value)
    assert f"{bad}/text" in msg and "4001-1-0001" in msg and "'X'" in msg and "\n" not in msg


def test_missing_text_file_is_one_line_cli_error(spelled, tmp_path, capsys):
    import shutil

    from s3prl.bin.train_asr import main
    from s3prl.errors import cli_main

    nodir = tmp_path / "test_notext"
    shutil.copytree(spelled / "test", nodir)
    (nodir / "text").unlink()
    argv = ["--config", str(REPO / "egs/librispeech/conf/downstream/asr_bilstm_tiny.yaml"),
            "--train", str(spelled / "train"), "--dev", str(spelled / "dev"), "--test", str(nodir),
            "--results-md", "", str(tmp_path / "exp")]
    with pytest.raises(SystemExit) as e:
        cli_main(main, argv)
    assert e.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1].endswith(f"error: {nodir}/text: missing (ASR needs the transcripts of {nodir})"), err
    assert not any("Traceback" in line for line in err)


def test_train_text_missing(spelled, tmp_path):
    import shutil

    tr = tmp_path / "train"
    shutil.copytree(spelled / "train", tr)
    (tr / "text").unlink()
    inputs = AsrInputs(train=str(tr), dev=str(spelled / "dev"), test=str(spelled / "test"))
    with pytest.raises(UserError, match=r"train/text: missing \(ASR needs the training transcripts"):
        run_asr(tiny_cfg(), inputs, tmp_path / "exp", progress=False)


def test_on_the_fly_needs_upstream(spelled, tmp_path):
    inputs = AsrInputs(train=str(spelled / "train"), dev=str(spelled / "dev"), test=str(spelled / "test"),
                       on_the_fly=True)
    with pytest.raises(UserError, match="--on-the-fly needs --upstream"):
        run_asr(tiny_cfg(), inputs, tmp_path / "exp", progress=False)


def test_cli_layer_without_on_the_fly(spelled, tmp_path):
    from s3prl.bin.train_asr import main

    with pytest.raises(UserError, match="--layer and --fine-tune need --on-the-fly"):
        main(["--train", str(spelled / "train"), "--dev", str(spelled / "dev"), "--test", str(spelled / "test"),
              "--layer", "weighted_sum", str(tmp_path / "exp")])


# ---------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["asr_bilstm.yaml", "asr_bilstm_tiny.yaml"])
def test_shipped_configs_load(name):
    cfg = load_asr_config(REPO / "egs/librispeech/conf/downstream" / name)
    assert cfg.task == "asr" and cfg.tokenizer.mode == "char" and cfg.model.num_layers == 2
    if name == "asr_bilstm.yaml":
        assert cfg.model.hidden_size == 1024 and cfg.optimizer.lr == pytest.approx(1e-4)
        assert cfg.dataloader.batch_size == 32 and cfg.runner.dev_step == 2000
    else:
        assert cfg.model.hidden_size < 1024 and cfg.runner.total_steps <= 1000


def test_config_unknown_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  hiden_size: 3\n")
    with pytest.raises(Exception, match="hiden_size"):
        load_asr_config(p)


# ------------------------------------------------------------------------------ on the fly
def tiny_tera(path: Path) -> str:
    """A random 2-layer TERA checkpoint (hidden 32) over 80-dim fbank, written by our own code."""
    return write_tiny_tera(path)


@pytest.mark.parametrize("mode", ["weighted_sum", "fine_tune"])
def test_on_the_fly_upstream_modes(tmp_path, make_data_dir, one_thread, mode):
    """A tiny TERA checkpoint run inside the model over wav data dirs: frozen weighted sum (only
    the layer weights and the head learn) or fine-tuned jointly (the upstream changes and is saved)."""
    ckpt = tiny_tera(tmp_path / "tera.ckpt")
    tr = make_data_dir(tmp_path / "train", speakers=("1001", "1002"), utts_per_speaker=2)
    dv = make_data_dir(tmp_path / "dev", speakers=("2001",), utts_per_speaker=2, seed=1)
    te = make_data_dir(tmp_path / "test", speakers=("3001",), utts_per_speaker=2, seed=2)
    over = {"runner.total_steps": 3, "runner.dev_step": 3, "runner.save_step": 3, "input.layer": "weighted_sum"}
    if mode == "fine_tune":
        over["input.fine_tune"] = "true"
    inputs = AsrInputs(train=str(tr), dev=str(dv), test=str(te), upstream=ckpt, on_the_fly=True)
    exp = tmp_path / "exp"
    rec = run_asr(tiny_cfg(**over), inputs, exp, progress=False)
    assert rec["layer"] == ("weighted_sum+ft" if mode == "fine_tune" else "weighted_sum")
    assert rec["upstream"] == f"{tmp_path.name}/tera" and rec["steps"] == 3
    assert (exp / "decode_dev" / "hyp.txt").is_file() and (exp / "decode_test" / "wer").is_file()
    state = torch.load(exp / "states-3.ckpt", map_location="cpu", weights_only=True)["model"]
    assert "featurizer.weights" in state
    assert not torch.equal(state["featurizer.weights"], torch.zeros_like(state["featurizer.weights"]))
    up_keys = [k for k in state if k.startswith("upstream.")]
    if mode == "fine_tune":
        fresh = load_upstream(ckpt)
        changed = [k for k, v in fresh.state_dict().items()
                   if v.is_floating_point() and not torch.equal(state[f"upstream.{k}"], v)]
        assert up_keys and changed
    else:
        assert not up_keys      # a frozen upstream is re-read from its own file
