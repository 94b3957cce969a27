"""Tests of utils/parse_options.sh: Kaldi's option-parsing rules.

As kaldi-asr/kaldi, egs/wsj/s5/utils/parse_options.sh.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
foo_bar=1
use_gpu=false
name=default
cmd=run.pl
help_message="Usage: demo.sh [options] <arg>"
. "{utils}/parse_options.sh"
printf 'foo_bar=[%s] use_gpu=[%s] name=[%s] cmd=[%s] npos=%d\\n' "$foo_bar" "$use_gpu" "$name" "$cmd" "$#"
for a in "$@"; do printf 'pos=[%s]\\n' "$a"; done
"""


@pytest.fixture
def demo(tmp_path, repo_root):
    d = tmp_path / "dir with space"
    d.mkdir()
    script = d / "demo.sh"
    script.write_text(SCRIPT.format(utils=repo_root / "utils"))
    script.chmod(0o755)

    def run(*args: str, cwd: Path = d) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, cwd=cwd)
    return run


def test_defaults_and_positionals(demo):
    r = demo("a", "b c")
    assert r.returncode == 0
    assert r.stdout == "foo_bar=[1] use_gpu=[false] name=[default] cmd=[run.pl] npos=2\npos=[a]\npos=[b c]\n"


@pytest.mark.parametrize("opt", ["--foo-bar", "--foo_bar"])
def test_dash_and_underscore(demo, opt):
    r = demo(opt, "7", "x")
    assert r.returncode == 0 and "foo_bar=[7]" in r.stdout and "npos=1" in r.stdout


def test_unknown_option(demo):
    r = demo("--no-such-opt", "1", "x")
    assert r.returncode == 1
    assert r.stderr.strip() == "demo.sh: invalid option --no-such-opt"
    assert r.stdout == ""


def test_equals_form_rejected(demo):
    r = demo("--foo-bar=3", "x")
    assert r.returncode == 1
    assert "--name value" in r.stderr and "--foo-bar=3" in r.stderr


def test_boolean_validation(demo):
    assert "use_gpu=[true]" in demo("--use-gpu", "true").stdout
    r = demo("--use-gpu", "yes")
    assert r.returncode == 1 and 'expected "true" or "false" for --use-gpu' in r.stderr


def test_missing_value(demo):
    r = demo("--name")
    assert r.returncode == 1 and "--name requires a value" in r.stderr


def test_empty_cmd_refused(demo):
    r = demo("--cmd", "")
    assert r.returncode == 1 and "empty argument to --cmd" in r.stderr


def test_config_file_command_line_wins(demo, tmp_path):
    conf = tmp_path / "my conf.sh"
    conf.write_text("foo_bar=from_config\nname='config name'\n")
    # --config after --foo-bar: the command line still wins; name comes from the config
    r = demo("--foo-bar", "cli", "--config", str(conf), "p")
    assert r.returncode == 0
    assert "foo_bar=[cli]" in r.stdout and "name=[config name]" in r.stdout and "npos=1" in r.stdout
    r = demo("--config", str(tmp_path / "missing.conf"), "p")
    assert r.returncode == 1 and "missing config" in r.stderr


def test_help(demo):
    for flag in ("--help", "-h"):
        r = demo(flag)
        assert r.returncode == 0 and r.stderr.strip() == "Usage: demo.sh [options] <arg>" and r.stdout == ""


def test_stops_at_first_positional_and_double_dash(demo):
    r = demo("--foo-bar", "2", "pos", "--name", "late")
    assert "foo_bar=[2]" in r.stdout and "name=[default]" in r.stdout
    assert r.stdout.endswith("pos=[pos]\npos=[--name]\npos=[late]\n")
    r = demo("--", "--name", "x")
    assert r.returncode == 0 and "name=[default]" in r.stdout and "npos=2" in r.stdout


def test_values_with_spaces_and_quotes(demo):
    r = demo("--name", "a b  \"c\" $HOME 'd'", "x")
    assert r.returncode == 0 and "name=[a b  \"c\" $HOME 'd']" in r.stdout
