"""results.json, the RESULTS.md table (one row per task/upstream/layer/head) and results_table."""
from __future__ import annotations

import hashlib

import pytest

from s3prl.bin import results_table
from s3prl.downstream import results as R
from s3prl.errors import UserError


def _rec(**kw):
    rec = {"task": "phone", "upstream": "tera_tiny", "layer": "last", "head": "linear", "dev_accuracy": 0.6512,
           "test_accuracy": 0.6431, "best_step": 150, "steps": 200, "config_hash": "abcdef0123",
           "command": "python -m s3prl.bin.train_downstream ..."}
    rec.update(kw)
    return rec


def test_config_hash():
    assert R.config_hash("a: 1\n") == hashlib.sha1(b"a: 1\n").hexdigest()[:10]


def test_results_md_row_update_is_idempotent(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nSome notes kept as they are.\n")
    R.update_results_md(md, _rec(), "exp/a")
    first = md.read_text()
    R.update_results_md(md, _rec(), "exp/a")
    assert md.read_text() == first
    assert first.startswith("# Results\n\nSome notes kept as they are.\n")
    rows = R.parse_results_table(first)
    assert rows == [["phone", "tera_tiny", "last", "linear", "-", "65.12", "64.31", "150", "200", "abcdef0123", "-",
                     "exp/a"]]
    # A rerun of the same (task, upstream, layer, head, seed) replaces its row; another head adds one.
    R.update_results_md(md, _rec(test_accuracy=0.7), "exp/a")
    R.update_results_md(md, _rec(head="1hidden"), "exp/b")
    text = md.read_text()
    rows = R.parse_results_table(text)
    assert [r[3] for r in rows] == ["1hidden", "linear"]
    assert rows[1][6] == "70.00"
    # Text after the table survives too.
    md.write_text(text + "\n## Later section\n")
    R.update_results_md(md, _rec(task="speaker", head="utterance"), "exp/c")
    assert md.read_text().endswith("## Later section\n") and len(R.parse_results_table(md.read_text())) == 3


def test_results_json_roundtrip_and_table_cli(tmp_path, capsys):
    exp = tmp_path / "exp"
    R.write_results(exp, _rec())
    assert R.read_results(exp)["test_accuracy"] == 0.6431
    assert R.read_results(tmp_path / "none") is None
    md = tmp_path / "RESULTS.md"
    assert results_table.main(["--exp", str(exp), "--update", str(md)]) == 0
    out = capsys.readouterr().out
    assert "| phone | tera_tiny | last | linear | - | 65.12 | 64.31 |" in out
    assert len(R.parse_results_table(md.read_text())) == 1
    assert results_table.main([str(md)]) == 0
    table = capsys.readouterr().out
    assert "tera_tiny" in table
    # tables are named by task; phone and speaker share one, also called classification
    for name in ("phone", "speaker", "classification"):
        assert results_table.main(["--table", name, str(md)]) == 0
        assert capsys.readouterr().out == table
    assert results_table.main(["--table", "asr", str(md)]) == 0
    asr = capsys.readouterr().out
    assert asr.startswith("| task | upstream | layer | head | units | dev WER |") and "tera_tiny" not in asr
    with pytest.raises(UserError, match="results.json: missing"):
        results_table.main(["--exp", str(tmp_path / "nope"), str(md)])


def test_learning_curve_png(tmp_path):
    p = R.plot_learning_curve(tmp_path / "lc.png", [(10, 2.0), (20, 1.0)], [(10, 0.5), (20, 0.6)], best_step=20)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
