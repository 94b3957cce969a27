"""The options of egs/librispeech/run.sh's stages 10 (--curve-steps) and 11 (--eval-corpus-seed,
--eval-corpus-dir): bad values stop the recipe with exit 1 and one line naming the option, before
any stage runs and before anything is written; both stages are off by default."""
from __future__ import annotations

import pytest

from tests.reliability.test_recipe_options import _config_section, _recipe_copy, _run, _written


@pytest.mark.parametrize("args,line", [
    (("--curve-steps", "500 x"), "--curve-steps must be pre-training steps (whole numbers >= 1), got 'x'"),
    (("--curve-steps", "0,500"), "--curve-steps must be pre-training steps (whole numbers >= 1), got '0'"),
    (("--eval-corpus-seed", "two"), "--eval-corpus-seed must be a whole number >= 0, got 'two'"),
    (("--eval-corpus-seed", "1"), "--eval-corpus-seed 1 is the pre-training corpus' --synth-seed; give another seed"),
    (("--eval-corpus-seed", "2", "--eval-corpus-dir", "/data"), "give --eval-corpus-seed or --eval-corpus-dir, not both"),
])
def test_bad_probe_stage_options_refused_before_any_stage(tmp_path, args, line):
    rdir = _recipe_copy(tmp_path, "librispeech")
    r = _run(rdir, *args)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == f"{rdir}/run.sh: {line}", r.stderr
    assert "Stage" not in r.stderr + r.stdout and _written(rdir) == []


def test_probe_stages_are_off_by_default():
    conf = _config_section("librispeech")
    assert conf["curve_steps"] == conf["eval_corpus_seed"] == conf["eval_corpus_dir"] == '""'
