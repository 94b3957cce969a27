"""The downstream task table (s3prl.downstream.tasks): a task defined in this test module, and
nowhere in the package, is registered, trained through ``train_downstream --task mock``, scored,
written to results.json and to its own RESULTS.md table (``results_table --table mock``), then
removed again. Also: the built-in tasks are in the table and each config accepts its task's heads.

The mock task: utterance-level 2-class "is the speaker one of --positive-speakers" on the tiny CPC
fixtures (speaker means make it learnable from the features).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from s3prl.bin import results_table, train_downstream
from s3prl.config import ConfigError
from s3prl.data.labels import cpc_splits
from s3prl.downstream import tasks
from s3prl.downstream.config import TaskConfig, load_task_config
from s3prl.downstream.data import LabeledFeatureDataset, collate_labeled
from s3prl.downstream.heads import HeadConfig, build_head
from s3prl.downstream.results import TableSpec, parse_results_table, percent, read_results, table_row
from s3prl.downstream.runner import TaskSpec, eval_loader, finish_run, load_best_dev, run_fields
from s3prl.downstream.task import ClassificationTask, RunInputs, feature_dataset, representation_of

FAST = ["runner.total_steps=40", "dataloader.cmvn=global", "dataloader.norm_vars=true", "runner.log_step=10",
        "runner.save_step=20", "runner.dev_step=10",
        "optimizer.lr=0.02"]


# ---------------------------------------------------------------------------- the mock task
@dataclass
class MockConfig(TaskConfig):
    task: str = "mock"
    head: HeadConfig = field(default_factory=lambda: HeadConfig(name="utterance"))

    heads_by_task: ClassVar[dict[str, tuple[str, ...]]] = {"mock": ("utterance", "rnn")}


@dataclass
class MockInputs(RunInputs):
    positive: tuple[str, ...] = ()

    def resolved(self) -> dict:
        return {**super().resolved(), "positive": list(self.positive)}


def add_mock_arguments(p) -> None:
    RunInputs.add_arguments(p)
    p.add_argument("--positive-speakers", required=True, help="comma-separated speakers of class 1")


def mock_inputs(args) -> MockInputs:
    return MockInputs(label_dir=args.labels, feats_dir=args.feats, data_dir=args.data, upstream=args.upstream,
                      positive=tuple(args.positive_speakers.split(",")))


def build_mock(cfg: MockConfig, inputs: MockInputs, exp_dir, device: str = "cpu"):
    splits = cpc_splits(inputs.label_dir)
    rep = representation_of(inputs, cfg.input, device, dataloader=cfg.dataloader)
    datasets = {}
    for name, utts in splits.items():
        fd = feature_dataset(inputs.feats_dir or inputs.data_dir, cfg.dataloader, rep, utts=utts, train=name == "train")
        labels = {u: int(u.split("-")[0] in inputs.positive) for u in utts}
        datasets[name] = LabeledFeatureDataset(fd, labels, frame_labels=False)
    head = build_head(cfg.head, rep.input_dim(datasets["train"]), 2)
    return ClassificationTask(rep.model(head), 2, save_upstream=False), datasets, {"upstream": rep.name,
                                                                                   "layer": rep.layer}


def score_mock(task, trainer, datasets, info, chash, history, *, cfg, inputs, exp_dir, command) -> dict:
    best = load_best_dev(task, trainer, exp_dir)
    acc = {n: task.evaluate(task.model, eval_loader(datasets[n], 4, cfg.dataloader, collate_labeled))["accuracy"]
           for n in ("dev", "test")}
    record = {"task": "mock", "upstream": info["upstream"], "layer": info["layer"], "head": cfg.head.name,
              "dev_accuracy": acc["dev"], "test_accuracy": acc["test"], **run_fields(best, chash, command, exp_dir)}
    finish_run(exp_dir, record, history, best.dev_history, best, title="mock", required=MOCK_TABLE.required)
    return record


def mock_row(record: dict, exp_label: str | None = None) -> list[str]:
    return table_row([record["task"], record["upstream"], record["layer"], record["head"],
                      percent(record["test_accuracy"])], record, exp_label)


MOCK_TABLE = TableSpec(begin="<!-- mock-results:begin -->", end="<!-- mock-results:end -->", title="## Mock task",
                       columns=("task", "upstream", "layer", "head", "test acc %", "best step", "steps", "config",
                                "exp"),
                       key_columns=4, required=("task", "upstream", "layer", "head", "dev_accuracy", "test_accuracy",
                                                "best_step", "steps", "config_hash", "command"), row=mock_row)

MOCK = TaskSpec(name="mock", config=MockConfig, add_arguments=add_mock_arguments,
                inputs=mock_inputs, build=build_mock, score=score_mock, collate_fn=collate_labeled, table=MOCK_TABLE,
                describe=lambda r: f"mock {r['head']}: test {100 * r['test_accuracy']:.2f} %")


@pytest.fixture
def mock_task():
    tasks.register(MOCK)
    try:
        yield MOCK
    finally:
        tasks.unregister("mock")
    assert "mock" not in tasks.TASKS


# ------------------------------------------------------------------------------------ tests
def test_builtin_tasks_and_their_heads():
    assert sorted(tasks.TASKS) == ["asr", "hybrid", "phone", "sentiment", "speaker"]
    assert tasks.get_task("speaker").heads == ("frame", "utterance", "rnn")
    assert tasks.get_task("hybrid").heads == ("linear", "1hidden", "concat")
    with pytest.raises(ConfigError, match="'rnn' is not a hybrid head"):
        load_task_config(tasks.get_task("hybrid").config, None, ["head.name=rnn"])
    assert load_task_config(tasks.get_task("speaker").config, None, ["head.name=rnn"], {"task": "speaker"})
    with pytest.raises(ConfigError, match="'linear' is not a speaker head"):
        load_task_config(tasks.get_task("speaker").config, None, ["head.name=linear"], {"task": "speaker"})
    with pytest.raises(ConfigError, match="'linear' is not a sentiment head"):
        load_task_config(tasks.get_task("sentiment").config, None, ["head.name=linear"])
    with pytest.raises(Exception, match="unknown downstream task 'mock'"):
        tasks.get_task("mock")
    with pytest.raises(ValueError, match="already registered"):
        tasks.register(tasks.get_task("phone"))


def test_mock_task_trains_through_the_cli_and_fills_its_table(cpc, tmp_path, mock_task, capsys):
    md, exp = tmp_path / "RESULTS.md", tmp_path / "exp"
    argv = ["--task", "mock", *[a for o in FAST for a in ("--override", o)], "--labels", str(cpc.labels),
            "--feats", str(cpc.feats), "--positive-speakers", "103,19", "--results-md", str(md), "--no-progress",
            str(exp)]
    assert train_downstream.main(argv) == 0
    assert capsys.readouterr().out.startswith("mock utterance: test ")
    rec = read_results(exp, MOCK_TABLE.required)
    assert rec["task"] == "mock" and rec["steps"] == 40 and rec["head"] == "utterance"
    assert rec["test_accuracy"] == 1.0          # 4 test utterances, speaker means 1 sd apart
    assert "positive:" in (exp / "config.yaml").read_text()   # the task's own input is in the hashed config
    rows = parse_results_table(md.read_text(), str(md), MOCK_TABLE)
    assert rows == [["mock", "feats", "last", "utterance", "100.00", str(rec["best_step"]), "40",
                     rec["config_hash"], str(exp)]]
    assert results_table.main(["--table", "mock", "--exp", str(exp), str(tmp_path / "other.md")]) == 0
    assert f"| mock | feats | last | utterance | 100.00 | {rec['best_step']} | 40 |" in capsys.readouterr().out
    # the config checks the head against the task's heads
    with pytest.raises(ConfigError, match="'linear' is not a mock head"):
        train_downstream.main(argv[:2] + ["--override", "head.name=linear"] + argv[2:])
    # the same command again: complete, nothing trained
    assert train_downstream.main(argv) == 0
    assert capsys.readouterr().out.startswith("complete: mock utterance")


def test_unregistered_task_is_refused(cpc, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_downstream.main(["--task", "mock", "--labels", str(cpc.labels), "--feats", str(cpc.feats),
                               str(tmp_path / "exp")])
    assert "invalid choice: 'mock'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        results_table.main(["--table", "mock"])
