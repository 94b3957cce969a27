"""s3prl.downstream.transfer and the transfer_table verb: the second-corpus table, its margins over
the fbank probe on each corpus, its own markers in RESULTS.md (the other tables kept)."""
from __future__ import annotations

from pathlib import Path

import pytest

from s3prl.bin.transfer_table import main
from s3prl.downstream.results import CLASSIFICATION, parse_results_table, update_results_md, write_results
from s3prl.downstream.transfer import BEGIN, TABLE, transfer_rows
from s3prl.errors import UserError


def _probe(d: Path, upstream: str, layer, dev: float, test: float, task="phone", head="linear") -> Path:
    d.mkdir(parents=True)
    write_results(d, {"task": task, "upstream": upstream, "layer": layer, "head": head, "dev_accuracy": dev,
                      "test_accuracy": test, "best_step": 10, "steps": 10, "config_hash": "abc", "command": "x",
                      "exp_dir": str(d)})
    return d


def test_rows_margins_and_reference(tmp_path):
    ev, ref = tmp_path / "exp" / "downstream_eval2", tmp_path / "exp" / "downstream"
    fb = _probe(ev / "phone_linear_fbank", "fbank", "last", 0.40, 0.41)
    tera = _probe(ev / "phone_linear_tera_tiny_layer-3", "exp/tera_tiny", 3, 0.45, 0.4625)
    apc = _probe(ev / "phone_linear_apc_tiny_layer-2", "exp/apc_tiny", 2, 0.38, 0.39)
    _probe(ref / "phone_linear_fbank", "fbank", "last", 0.43, 0.4353)
    _probe(ref / "phone_linear_tera_tiny_layer-3", "exp/tera_tiny", 3, 0.51, 0.5188)
    rows = transfer_rows("eval2", [fb, tera, apc], ref)
    assert [r[:10] for r in rows] == [
        ["eval2", "phone", "fbank", "last", "linear", "40.00", "41.00", "+0.00", "43.53", "+0.00"],
        ["eval2", "phone", "exp/tera_tiny", "3", "linear", "45.00", "46.25", "+5.25", "51.88", "+8.35"],
        ["eval2", "phone", "exp/apc_tiny", "2", "linear", "38.00", "39.00", "-2.00", "-", "-"]]   # no apc reference


def test_table_has_its_own_markers_and_keeps_the_rest(tmp_path, capsys):
    ev = tmp_path / "ev"
    fb = _probe(ev / "phone_linear_fbank", "fbank", "last", 0.40, 0.41)
    md = tmp_path / "RESULTS.md"
    update_results_md(md, {"task": "phone", "upstream": "fbank", "layer": "last", "head": "linear",
                           "dev_accuracy": 0.43, "test_accuracy": 0.4353, "best_step": 1, "steps": 1,
                           "config_hash": "h", "command": "c", "exp_dir": "x"})
    main_rows = parse_results_table(md.read_text(), "RESULTS.md", CLASSIFICATION)
    assert main(["--corpus", "seed2", "--exp", str(fb), "--results-md", str(md)]) == 0
    assert main(["--corpus", "seed3", "--exp", str(fb), "--results-md", str(md)]) == 0
    sp = _probe(ev / "speaker_utterance_fbank", "fbank", "last", 0.7, 0.75, task="speaker", head="utterance")
    assert main(["--corpus", "seed2", "--exp", str(sp), "--results-md", str(md)]) == 0
    text = md.read_text()
    assert text.count(BEGIN) == 1
    assert parse_results_table(text, "RESULTS.md", CLASSIFICATION) == main_rows
    rows = parse_results_table(text, "RESULTS.md", TABLE)
    assert [r[:3] + r[5:7] for r in rows] == [["seed2", "phone", "fbank", "40.00", "41.00"],
                                            ["seed2", "speaker", "fbank", "70.00", "75.00"],
                                            ["seed3", "phone", "fbank", "40.00", "41.00"]]
    assert "| seed2 | speaker | fbank |" in capsys.readouterr().out


def test_unfinished_probe_is_named(tmp_path):
    (tmp_path / "p").mkdir()
    with pytest.raises(UserError, match=r"p/results.json: missing or incomplete"):
        transfer_rows("x", [tmp_path / "p"], None)
