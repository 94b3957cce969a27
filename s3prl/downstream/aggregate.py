"""Probe runs over several seeds: mean +- sd per row, and which differences exceed the noise.

The recipe trains each phone / speaker probe once per seed (``--probe-seeds``: ``runner.seed``,
the head's initial weights, and ``dataloader.seed``, the batch order; the representations and the
test set are the same in every seed). RESULTS.md keeps one row per run (task, upstream, layer,
head, seed); this module folds the runs of one (task, upstream, layer, head) into one row:

- dev and test accuracy as ``mean +- sd (n=N)``, sd the sample standard deviation (n - 1 in the
  denominator; no sd for a single run), as the recognizer's 3-seed figures are given in
  egs/librispeech/RESULTS.md ("mean +- sd", seeds 1337, 2, 3);
- for each learned upstream, its test mean minus the mean of every baseline row (fbank, ...) of
  the same task and head, and whether that difference is larger than the noise.

The noise rule: a difference counts as larger than the noise when |mean difference| > 2 x the
pooled seed sd, s_p = sqrt(((n1 - 1) s1^2 + (n2 - 1) s2^2) / (n1 + n2 - 2)) (i.e. Cohen's d > 2).
Why this and not a Welch t-test: with 3 seeds per row each sd rests on 2 degrees of freedom, and
Welch's test then has 2-4 degrees of freedom, where its p-value moves a lot with the estimated
variances; a fixed multiple of the pooled sd is a rule a reader can check by eye in the table.
For n1 = n2 = 3 it is the two-sample t statistic t = 2 / sqrt(2/3) = 2.45 on 4 degrees of
freedom (two-sided p = 0.07 under normal errors), so it is a screen, not a significance test at
5 %. What it measures is the probe's own seed noise only: the pre-training seed and the sampling
of the (small) test set are held fixed across seeds and are not in it (the speaker test set of
the demo is 200 utterances: one utterance is 0.5 points). With fewer than 2 runs on either side
there is no noise estimate and the cell says so. Nothing here looks at test to choose anything:
each run's test accuracy is the one at its own best-dev step. The numbers folded are the per-run
table's cells (percent, 2 decimals), so a mean or sd may differ from one computed on the
results.json fractions by rounding (at most 0.005 points).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

NOISE_FACTOR = 2.0     # |mean difference| > NOISE_FACTOR x pooled sd
GROUP_COLUMNS = ("task", "upstream", "layer", "head")


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """(mean, sample sd with n - 1; None for a single value) of `values` (non-empty)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_sd of no values")
    m = sum(values) / n
    if n < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def pooled_sd(sd1: float | None, n1: int, sd2: float | None, n2: int) -> float | None:
    """The pooled sd of two groups, sqrt(((n1-1) sd1^2 + (n2-1) sd2^2) / (n1 + n2 - 2)); None
    unless both groups have n >= 2."""
    if n1 < 2 or n2 < 2 or sd1 is None or sd2 is None:
        return None
    return math.sqrt(((n1 - 1) * sd1 ** 2 + (n2 - 1) * sd2 ** 2) / (n1 + n2 - 2))


def beyond_noise(diff: float, pooled: float | None, factor: float = NOISE_FACTOR) -> bool | None:
    """Whether |diff| > factor x pooled (None when there is no noise estimate)."""
    if pooled is None:
        return None
    return abs(diff) > factor * pooled


@dataclass
class Group:
    """The runs of one (task, upstream, layer, head): their seeds and dev / test accuracies (%)."""
    key: tuple[str, str, str, str]
    seeds: list[str]
    dev: list[float]
    test: list[float]

    @property
    def n(self) -> int:
        return len(self.test)


def _num(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def group_rows(rows: list[list[str]], columns: tuple, dev_col: str, test_col: str) -> list[Group]:
    """The per-run table `rows` (cells under `columns`) grouped by (task, upstream, layer, head),
    in key order; a run whose dev or test cell is not a number is left out."""
    at = {c: i for i, c in enumerate(columns)}
    groups: dict[tuple, Group] = {}
    for r in rows:
        dev, test = _num(r[at[dev_col]]), _num(r[at[test_col]])
        if dev is None or test is None:
            continue
        key = tuple(r[at[c]] for c in GROUP_COLUMNS)
        g = groups.setdefault(key, Group(key, [], [], []))
        g.seeds.append(r[at["seed"]] if "seed" in at else "-")
        g.dev.append(dev)
        g.test.append(test)
    return [groups[k] for k in sorted(groups)]


def is_baseline(upstream: str) -> bool:
    """A row of a parameter-free baseline (fbank, mfcc ...; also a named variant such as
    fbank_uttcmvn): no checkpoint, nothing learned."""
    from s3prl.upstream.hub import BASELINES

    return upstream in BASELINES or any(upstream.startswith(f"{b}_") for b in BASELINES)


def cell(values: list[float]) -> str:
    """``mean +- sd (n=N)`` with 2 decimals (``mean (n=1)`` for one run)."""
    m, sd = mean_sd(values)
    return f"{m:.2f} (n=1)" if sd is None else f"{m:.2f} +- {sd:.2f} (n={len(values)})"


def versus(g: Group, base: Group) -> str:
    """`g`'s test mean against the baseline group `base`: the difference and the noise verdict."""
    diff = mean_sd(g.test)[0] - mean_sd(base.test)[0]
    pooled = pooled_sd(mean_sd(g.test)[1], g.n, mean_sd(base.test)[1], base.n)
    verdict = beyond_noise(diff, pooled)
    if verdict is None:
        return f"{base.key[1]}: {diff:+.2f}, no noise estimate (n<2)"
    return (f"{base.key[1]}: {diff:+.2f}, {'beyond' if verdict else 'within'} noise "
            f"({NOISE_FACTOR:g} x sd {pooled:.2f})")


SUMMARY_COLUMNS = ("task", "upstream", "layer", "head", "seeds", "dev acc % (mean +- sd)",
                   "test acc % (mean +- sd)", "test vs baseline (> 2 x pooled sd = beyond noise)")


def summary_rows(groups: list[Group]) -> list[list[str]]:
    """One row per group: mean +- sd of dev and test, and each learned upstream against every
    baseline of the same task and head (`versus`)."""
    out = []
    for g in groups:
        if is_baseline(g.key[1]):
            vs = "baseline"
        else:
            bases = [b for b in groups if is_baseline(b.key[1]) and b.key[0] == g.key[0] and b.key[3] == g.key[3]]
            vs = "; ".join(versus(g, b) for b in bases) or "-"
        out.append([*g.key, ",".join(g.seeds), cell(g.dev), cell(g.test), vs])
    return out


__all__ = ["mean_sd", "pooled_sd", "beyond_noise", "Group", "group_rows", "is_baseline", "cell", "versus",
           "summary_rows", "SUMMARY_COLUMNS", "NOISE_FACTOR"]
