"""s3prl.downstream.curves and the learning_curve verb: the kept checkpoints at a curve's steps
(a missing one is a one-line error naming it), and the report (PNG, JSON, RESULTS.md rows) built
from probes' results.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from s3prl.bin.learning_curve import main
from s3prl.config import save_config
from s3prl.downstream.curves import (BEGIN, END, TABLE, collect_curve, curve_checkpoints, parse_steps,
                                     write_curve_report)
from s3prl.downstream.results import parse_results_table, update_results_md, write_results
from s3prl.errors import UserError, cli_main
from s3prl.train.pretrain import PretrainConfig


def _pretrain_run(d: Path, total: int, kept: list[int]) -> Path:
    cfg = PretrainConfig()
    cfg.runner.total_steps = total
    d.mkdir(parents=True)
    save_config(cfg, d / "config.yaml")
    for s in kept:
        (d / f"states-{s}.ckpt").write_bytes(b"x")
    return d


def test_checkpoints_at_the_steps_up_to_total(tmp_path):
    run = _pretrain_run(tmp_path / "exp" / "apc_tiny", 500, [100, 200, 400, 500])
    assert curve_checkpoints(run, [500, 100, 1000, 200]) == [(100, run / "states-100.ckpt"),
                                                             (200, run / "states-200.ckpt"),
                                                             (500, run / "states-500.ckpt")]


def test_missing_checkpoint_is_one_line_naming_it(tmp_path, capsys):
    run = _pretrain_run(tmp_path / "tera_tiny", 8000, [7500, 8000])
    with pytest.raises(UserError) as e:
        curve_checkpoints(run, [500, 8000])
    assert str(e.value) == (f"{run}/states-500.ckpt: no checkpoint at pre-training step 500 (kept: 7500 8000); "
                            f"pre-train again with runner.keep_steps listing it (run.sh: move {run} aside, rerun "
                            "stage 3 with --curve-steps)")
    # the verb checks every run before it prints anything, and exits 1 with that one line
    good = _pretrain_run(tmp_path / "apc_tiny", 500, [500])
    with pytest.raises(SystemExit) as ex:
        cli_main(main, ["checkpoints", "--steps", "500 8000", str(good), str(run)])
    out, err = capsys.readouterr()
    assert ex.value.code == 1 and out == ""
    errors = [ln for ln in err.strip().splitlines() if " INFO: " not in ln]   # a log line says 8000 > apc's 500
    assert len(errors) == 1 and errors[0].endswith(f": error: {e.value}")
    # not a pre-training run at all
    with pytest.raises(UserError, match=r"nothing/config.yaml: no such file \(.*run stage 3 first\)"):
        curve_checkpoints(tmp_path / "nothing", [500])


def test_checkpoints_verb_lists_every_run(tmp_path, capsys):
    a = _pretrain_run(tmp_path / "apc_tiny", 500, [100, 500])
    b = _pretrain_run(tmp_path / "tera_tiny", 1000, [100, 500, 1000])
    assert main(["checkpoints", "--steps", "100,500 1000", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{a}\t100\t{a}/states-100.ckpt", f"{a}\t500\t{a}/states-500.ckpt",
                     f"{b}\t100\t{b}/states-100.ckpt", f"{b}\t500\t{b}/states-500.ckpt",
                     f"{b}\t1000\t{b}/states-1000.ckpt"]


@pytest.mark.parametrize("text", ["", "500 x", "0", "-5"])
def test_bad_steps(text):
    with pytest.raises(UserError, match="--curve-steps"):
        parse_steps(text)


def _probe(d: Path, upstream: str, layer, head: str, dev: float, test: float, task: str = "phone") -> Path:
    d.mkdir(parents=True)
    write_results(d, {"task": task, "upstream": upstream, "layer": layer, "head": head, "dev_accuracy": dev,
                      "test_accuracy": test, "best_step": 100, "steps": 100, "config_hash": "abc",
                      "command": "x", "exp_dir": str(d)})
    return d


def test_report_numbers_png_and_table(tmp_path):
    e = tmp_path / "exp"
    runs = [("tera_tiny", 1000, _probe(e / "t1000", "exp/tera_tiny/states-1000", 3, "linear", 0.50, 0.52)),
            ("tera_tiny", 500, _probe(e / "t500", "exp/tera_tiny/states-500", 3, "linear", 0.44, 0.45)),
            ("apc_tiny", 500, _probe(e / "a500", "exp/apc_tiny/states-500", 2, "linear", 0.48, 0.49))]
    fbank = _probe(e / "fb", "fbank", "last", "linear", 0.43, 0.4353)
    md = tmp_path / "RESULTS.md"
    # the main classification table is there before and is left alone
    update_results_md(md, {"task": "phone", "upstream": "fbank", "layer": "last", "head": "linear",
                           "dev_accuracy": 0.43, "test_accuracy": 0.4353, "best_step": 1, "steps": 1,
                           "config_hash": "h", "command": "c", "exp_dir": "x"})
    before = md.read_text()
    curve = collect_curve(runs, fbank)
    assert curve["task"] == "phone" and curve["head"] == "linear"
    assert [(c["upstream"], c["layer"], [(p["step"], p["test"]) for p in c["points"]]) for c in curve["curves"]] == \
        [("apc_tiny", "2", [(500, 0.49)]), ("tera_tiny", "3", [(500, 0.45), (1000, 0.52)])]
    assert curve["fbank"]["test"] == 0.4353
    out = tmp_path / "curves" / "phone_linear"
    assert write_curve_report(curve, out, md)
    png = out.with_name("phone_linear.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert json.loads(out.with_name("phone_linear.json").read_text()) == curve
    text = md.read_text()
    assert text.startswith(before.rstrip("\n")) and BEGIN in text and END in text
    rows = parse_results_table(text, "RESULTS.md", TABLE)
    assert [r[:7] for r in rows] == [
        ["phone", "linear", "apc_tiny", "2", "500", "48.00", "49.00"],
        ["phone", "linear", "tera_tiny", "3", "500", "44.00", "45.00"],
        ["phone", "linear", "tera_tiny", "3", "1000", "50.00", "52.00"],   # numeric step order
        ["phone", "linear", "fbank", "last", "-", "43.00", "43.53"]]
    # unchanged numbers: nothing rewritten
    stamps = {p: p.stat().st_mtime_ns for p in (png, md)}
    assert not write_curve_report(collect_curve(runs, fbank), out, md)
    assert {p: p.stat().st_mtime_ns for p in (png, md)} == stamps
    # another head's curve adds its rows and keeps these
    other = collect_curve([("tera_tiny", 500, _probe(e / "h500", "exp/tera_tiny/states-500", 3, "1hidden",
                                                     0.6, 0.61))], None)
    write_curve_report(other, tmp_path / "curves" / "phone_1hidden", md)
    rows = parse_results_table(md.read_text(), "RESULTS.md", TABLE)
    assert len(rows) == 5 and ["phone", "1hidden", "tera_tiny", "3", "500", "60.00", "61.00"] in [r[:7] for r in rows]


def test_report_verb_names_an_unfinished_probe(tmp_path):
    (tmp_path / "p").mkdir()
    with pytest.raises(UserError, match=r"p/results.json: missing or incomplete"):
        main(["report", "--run", f"tera_tiny:500:{tmp_path / 'p'}", str(tmp_path / "out")])
    with pytest.raises(UserError, match="expected NAME:STEP:PROBE_DIR"):
        main(["report", "--run", "tera_tiny:x:dir", str(tmp_path / "out")])
