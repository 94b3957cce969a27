"""Option handling of the three egs/*/run.sh, shared in utils/recipe.sh: a non-numeric numeric
option, or --nj above the speaker count of a set, stops the recipe with exit 1 and the option
named, before stage 0 runs and before anything is written (Kaldi's parse_options.sh takes any
string; its recipes then fail at the first `[ $stage -le N ]` with "integer expression expected"
and, inside `if`, exit 0 having run nothing)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import link_recipe
from tests.reliability.harness import REPO, env


def _recipe_copy(root: Path, name: str) -> Path:
    """egs/<name> made of links to the real recipe, under a path with spaces (outputs stay in tmp)."""
    return link_recipe(name, root / "my recipes" / "egs" / name)


def _run(rdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(rdir / "run.sh"), *args], cwd=str(rdir.parent), env=env(),
                          capture_output=True, text=True, timeout=120)


def _written(rdir: Path) -> list[str]:
    return sorted(p.name for p in rdir.iterdir() if not p.is_symlink())


def _config_section(recipe: str) -> dict[str, str]:
    """The `name=value` lines between "Begin/End configuration section" of egs/<recipe>/run.sh."""
    text = (REPO / "egs" / recipe / "run.sh").read_text()
    section = text.split("# Begin configuration section.")[1].split("# End configuration section.")[0]
    out = {}
    for line in section.splitlines():
        if line and not line.startswith((" ", "#")) and "=" in line:
            name, value = line.split("=", 1)
            out[name] = value.split("  #")[0].strip()
    return out


@pytest.mark.parametrize("recipe", ["librispeech", "timit", "mosei"])
@pytest.mark.parametrize("args,named", [
    (("--stage", "abc", "--stop-stage", "1"), "--stage"),
    (("--stage", "1x"), "--stage"),
    (("--stop-stage", "x"), "--stop-stage"),
    (("--stage", "-1"), "--stage"),
    (("--nj", "0"), "--nj"),
    (("--nj", "two"), "--nj"),
    (("--chunk-context", "1.5"), "--chunk-context"),
])
def test_non_numeric_option_exits_1_naming_it(tmp_path, recipe, args, named):
    rdir = _recipe_copy(tmp_path, recipe)
    r = _run(rdir, *args)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.strip().splitlines()[-1] == f"{rdir}/run.sh: {named} must be a whole number >= " \
        f"{1 if named == '--nj' else 0}, got '{args[args.index(named) + 1]}'"
    assert "integer expression expected" not in r.stderr
    assert "Stage" not in r.stderr + r.stdout          # no stage started
    assert _written(rdir) == []                        # nothing written


def _int_options() -> dict[str, int]:
    """NAME -> MIN of the numeric options utils/recipe.sh validates (its recipe_int_options)."""
    line = re.search(r'^recipe_int_options="([^"]*)"', (REPO / "utils" / "recipe.sh").read_text(), re.M)
    return {n: int(m) for n, m in (x.split(":") for x in line.group(1).split())}


RECIPES = ("librispeech", "timit", "mosei")


def test_every_numeric_option_is_validated(tmp_path):
    """Each option whose default is a whole number, in any recipe, is one utils/recipe.sh checks."""
    for recipe in RECIPES:
        numeric = {n for n, v in _config_section(recipe).items() if re.fullmatch(r"[0-9]+", v)}
        assert numeric <= set(_int_options()), (recipe, numeric - set(_int_options()))
    rdir = _recipe_copy(tmp_path, "timit")   # a list of whole numbers: its own check in utils/recipe.sh
    r = _run(rdir, "--probe-seeds", "1337 x")
    assert r.returncode == 1 and "--probe-seeds must be whole numbers, got 'x' in '1337 x'" in r.stderr
    assert _written(rdir) == []


@pytest.mark.parametrize("recipe,name", [(r, n) for r in RECIPES for n in _config_section(r) if n in _int_options()])
def test_each_numeric_option_refuses_a_non_number(tmp_path, recipe, name):
    rdir = _recipe_copy(tmp_path, recipe)
    opt = "--" + name.replace("_", "-")
    r = _run(rdir, opt, "x1")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == \
        f"{rdir}/run.sh: {opt} must be a whole number >= {_int_options()[name]}, got 'x1'", r.stderr
    assert _written(rdir) == []


@pytest.mark.parametrize("recipe", [r for r in RECIPES if "layer" in _config_section(r)])
def test_layer_choice_refused_before_any_stage(tmp_path, recipe):
    rdir = _recipe_copy(tmp_path, recipe)
    r = _run(rdir, "--layer", "top")
    assert r.returncode == 1 and "--layer must be last, all or a layer number, got 'top'" in r.stderr
    assert _written(rdir) == []


def _fake_librispeech(root: Path, subsets: dict[str, int]) -> Path:
    """A LibriSpeech-layout tree with `n` READER/CHAPTER dirs per subset (no audio needed: the
    check runs before stage 0)."""
    for subset, n in subsets.items():
        for i in range(n):
            (root / "LibriSpeech" / subset / f"{100 + i}" / "1").mkdir(parents=True)
    return root


def test_librispeech_nj_above_the_corpus_speakers_refused_before_stage_0(tmp_path):
    rdir = _recipe_copy(tmp_path, "librispeech")
    corpus = _fake_librispeech(tmp_path / "corpus", {"train-clean-100": 5, "dev-clean": 3, "test-clean": 2})
    r = _run(rdir, "--corpus-dir", str(corpus), "--cpc-dir", str(corpus), "--nj", "3")
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"{rdir}/run.sh: --nj 3 is more than the number of speakers "
                                                 f"(2) in {corpus}/LibriSpeech/test-clean")
    assert "Stage" not in r.stderr and _written(rdir) == []


@pytest.mark.parametrize("recipe,stage,speakers,fewest", [
    ("librispeech", "2", {"train-clean-100": 5, "dev-clean": 3, "test-clean": 2}, "test-clean"),
    ("timit", "1", {"train": 4, "dev": 2, "test": 3}, "dev"),
])
def test_nj_above_the_speakers_of_a_data_dir_refused_before_any_stage(tmp_path, recipe, stage, speakers, fewest):
    """From the stage that splits the data dirs (written by data prep) on, their speakers decide."""
    rdir = _recipe_copy(tmp_path, recipe)
    for x, spk in speakers.items():
        d = rdir / "data" / x
        d.mkdir(parents=True)
        (d / "utt2spk").write_text("".join(f"u{i} s{i}\n" for i in range(spk)))
    r = _run(rdir, "--stage", stage, "--nj", "3")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == \
        f"{rdir}/run.sh: --nj 3 is more than the number of speakers (2) in data/{fewest}", r.stderr
    assert "Stage" not in r.stderr and _written(rdir) == ["data"]
    assert not (rdir / "data" / fewest / "split3").exists()


def test_one_option_vocabulary_across_recipes():
    """An option that two recipes share has one name and one default in all of them; the old
    per-recipe spellings are gone (--size, --timit-dir, --pretrain-override, --downstream-override,
    --upstream-ckpt, --pretrain-config)."""
    conf = {r: _config_section(r) for r in ("librispeech", "timit", "mosei")}
    names = set().union(*conf.values())
    assert not names & {"size", "timit_dir", "pretrain_override", "downstream_override", "upstream_ckpt",
                        "pretrain_config"}
    shared = {n for n in names if sum(n in c for c in conf.values()) > 1}
    assert {"stage", "stop_stage", "nj", "corpus_dir", "feat_config", "layer", "chunk_context", "device",
            "pretrain_size", "downstream_size", "pretrain_overrides", "downstream_overrides", "upstreams",
            "upstream_ckpts", "ngpu", "kaldi_exp", "pk_config", "synth_preset", "synth_seed"} <= shared
    for n in shared - {"upstreams"}:  # the recipes pre-train different upstreams by default
        assert len({c[n] for c in conf.values() if n in c}) == 1, (n, {r: c.get(n) for r, c in conf.items()})
    assert conf["librispeech"]["device"] == "auto"


_CHOICES = [
    (("--device", "gpu"), "--device must be one of: auto cpu cuda, got 'gpu'"),
    (("--downstream-size", "large"), "--downstream-size must be one of: tiny base, got 'large'"),
    (("--pretrain-size", "huge"), "--pretrain-size must be one of: tiny base, got 'huge'"),
]


@pytest.mark.parametrize("recipe,args,line", [
    (r, a, m) for r in ("librispeech", "timit", "mosei") for a, m in _CHOICES
    if a[0][2:].replace("-", "_") in _config_section(r)])
def test_shared_choices_refused_before_any_stage(tmp_path, recipe, args, line):
    rdir = _recipe_copy(tmp_path, recipe)
    r = _run(rdir, *args)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == f"{rdir}/run.sh: {line}", r.stderr
    assert "Stage" not in r.stderr and _written(rdir) == []


@pytest.mark.parametrize("recipe", ["librispeech", "timit"])
def test_every_pretrain_preset_is_upstream_size(recipe):
    """--upstreams x --pretrain-size name conf/<upstream>_<size>.yaml in every pre-training recipe
    (base presets included: aalbert_base.yaml, apc_base.yaml); timit's are links to librispeech's."""
    conf = REPO / "egs" / recipe / "conf"
    for u in ("mockingjay", "tera", "aalbert", "apc"):
        for size in ("tiny", "base"):
            f = conf / f"{u}_{size}.yaml"
            assert f.is_file(), f
            if recipe == "timit":
                assert f.is_symlink() and f.resolve() == (REPO / "egs" / "librispeech" / "conf" / f.name).resolve()


@pytest.mark.parametrize("seeds,line", [
    ("1 x", "--probe-seeds must be whole numbers, got 'x' in '1 x'"),
    ("-1", "--probe-seeds must be whole numbers, got '-1' in '-1'"),
    ("2 3 2", "--probe-seeds: seed 2 given twice in '2 3 2'"),
    ("1337 01337", "--probe-seeds: seed 01337 given twice in '1337 01337'"),
    ("", "--probe-seeds: give at least one seed"),
])
def test_probe_seeds_refused_before_any_stage(tmp_path, seeds, line):
    rdir = _recipe_copy(tmp_path, "librispeech")
    r = _run(rdir, "--probe-seeds", seeds)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == f"{rdir}/run.sh: {line}", r.stderr
    assert "Stage" not in r.stderr and _written(rdir) == []


def test_plain_seed_is_every_probe_preset_seed():
    """utils/recipe.sh's RECIPE_PLAIN_SEED (the probe seed whose exp dirs keep their plain names)
    is the runner.seed of every phone / speaker preset, so a plain dir made before --probe-seeds
    existed holds that seed's run."""
    from s3prl.downstream.config import load_downstream_config

    plain = int(re.search(r"^RECIPE_PLAIN_SEED=([0-9]+)$", (REPO / "utils" / "recipe.sh").read_text(), re.M).group(1))
    presets = sorted((REPO / "egs" / "librispeech" / "conf" / "downstream").glob("[ps][hp]*.yaml"))
    assert {p.name.split("_")[0] for p in presets} == {"phone", "speaker"} and len(presets) >= 6
    for p in presets:
        cfg = load_downstream_config(str(p))
        assert cfg.runner.seed == plain and cfg.dataloader.seed == plain, p
