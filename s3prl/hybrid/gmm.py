"""Monophone HMM-GMM training and Viterbi alignment (Kaldi's steps/train_mono.sh and
steps/align_si.sh) on kaldi-hmm-gmm.

Schedule of kaldi-asr/kaldi egs/wsj/s5/steps/train_mono.sh: gmm-init-mono (one Gaussian per pdf
from the global mean and variance), align-equal-compiled, then ``num_iters`` (40) passes of
gmm-acc-stats-ali + gmm-est with re-alignment (gmm-align-compiled, ``--beam 6 --retry-beam 24``
on the first pass, ``--beam 10 --retry-beam 40`` after it; ``--transition-scale 1.0
--acoustic-scale 0.1 --self-loop-scale 0.1``) on the passes of ``realign_iters``, mixing up by
``(totgauss - numgauss) / max_iter_inc`` Gaussians per pass (from pass 2, as train_mono.sh
increments after each pass's gmm-est) to ``totgauss`` (1000), ``--power 0.25``,
``--min-gaussian-occupancy 3`` on the first update. Training graphs come from
compile-train-graphs (L.fst, the transcripts, the tree and transition model). The per-frame
statistics are batched per pdf with numpy (the posteriors of each pdf's Gaussians from
DiagGmm.log_likelihoods_matrix) and the ML update is done here on those sums (the Python binding's
AccumAmDiagGmm.get_acc returns a copy, so per-pdf statistics cannot be added to it in batches);
the formulas are Kaldi's MleDiagGmmUpdate (src/gmm/mle-diag-gmm.cc).

Training graphs carry no transition probabilities: compile-train-graphs sets the graph compiler's
``transition_scale`` and ``self_loop_scale`` to 0 (kaldi-asr/kaldi src/bin/compile-train-graphs.cc;
kaldi-hmm-gmm's TrainingGraphCompilerOptions default to 1) and gmm-align-compiled adds the current
model's with ``add_transition_probs`` before each alignment. Graphs compiled with scale 1 counted
them twice, self-loops at 1.1 instead of 0.1: a frame in a silence state (self-loop probability
0.25) cost about 1.5 instead of 0.14, so the long leading and trailing silences of the synthetic
corpus (about 45 frames each) were aligned to speech phones and the correct path fell out of
Kaldi's beams (554 of the demo corpus' 1000 utterances failed even at beam 40 / retry 160).
Alignment runs with Kaldi's beams: 6 on the first pass and 10 after it, retry 4 x beam
(align_si.sh: 10 / 40).

Jobs: as Kaldi's ``$cmd JOB=1:$nj``, alignment runs in ``nj`` worker processes (AlignJobs), the
data split by speaker as utils/split_data.sh splits it, each job holding its utterances' features
and training graphs for the whole training; ``ali.JOB.gz`` per job and ``num_jobs`` are written as
align_si.sh writes them. The statistics of all jobs' alignments are accumulated in this process
in the data's utterance order, so the model and the alignments do not depend on ``nj``.

Features: a data dir's ``feats.scp`` with per-speaker mean normalisation from ``cmvn.scp``
(apply-cmvn, as steps/train_mono.sh does). The model is saved as ``final.pt`` (plain tensors and
lists: the topology text, the transition log-probabilities and every pdf's weights, inverse
variances and means times inverse variances) and, for Kaldi's tools, as ``final.mdl`` in Kaldi's
text model format (TransitionModel then AmDiagGmm, gmm-copy --binary=false).
"""
from __future__ import annotations

import copy
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from s3prl.atomic import atomic_path, atomic_write_text
from s3prl.data.alignments import alignment_archives, write_alignments
from s3prl.data.ark import iter_scp, read_scp_stats
from s3prl.data.kaldi_dir import read_kv, split_by_speaker
from s3prl.errors import UserError
from s3prl.features.cmvn import apply_cmvn
from s3prl.hybrid.lang import read_symbols, read_topology

log = logging.getLogger(__name__)

REALIGN_ITERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38)


@dataclass
class MonoConfig:
    num_iters: int = 40
    max_iter_inc: int = 30
    totgauss: int = 1000
    power: float = 0.25
    beam: float = 10.0        # gmm-align-compiled --beam (train_mono.sh after the first pass, align_si.sh)
    first_beam: float = 6.0   # train_mono.sh's first re-alignment
    retry_factor: float = 4.0  # --retry-beam = 4 * beam
    acoustic_scale: float = 0.1
    self_loop_scale: float = 0.1
    transition_scale: float = 1.0
    seed: int = 3


# ---------------------------------------------------------------------------------------- data
def load_feats(data_dir: str | Path, cmvn: bool = True) -> dict[str, np.ndarray]:
    """{utt: (T, D) float32} of ``data_dir/feats.scp``, speaker mean-normalised (apply-cmvn)."""
    d = Path(data_dir)
    if not (d / "feats.scp").is_file():
        raise UserError(f"{d}: no feats.scp (run utils/compute_feats.sh first)")
    stats, utt2spk = {}, {}
    if cmvn and (d / "cmvn.scp").is_file():
        stats = {k: read_scp_stats(v, k) for k, v in read_kv(d / "cmvn.scp").items()}
        utt2spk = read_kv(d / "utt2spk")
    out = {}
    for utt, mat in iter_scp(d / "feats.scp"):
        if stats:
            mat = apply_cmvn(mat, stats[utt2spk[utt]], norm_vars=False)
        out[utt] = np.ascontiguousarray(mat, dtype=np.float32)
    return out


# ---------------------------------------------------------------------------------------- model
def _kaldi_train_graph_opts() -> khg.TrainingGraphCompilerOptions:
    """compile-train-graphs' options: no transition probabilities in the graphs (module docstring)."""
    o = khg.TrainingGraphCompilerOptions()
    o.transition_scale, o.self_loop_scale = 0.0, 0.0
    return o


class MonoModel:
    """Topology, monophone tree, transition model and diagonal-GMM acoustic model."""

    def __init__(self, topo_text: str, am: khg.AmDiagGmm | None = None, feats_dim: int = 0):
        self.topo_text = topo_text
        self.topo = khg.HmmTopology()
        self.topo.read(topo_text)
        self.tree = khg.monophone_context_dependency(
            phones=self.topo.phones, phone2num_pdf_classes=self.topo.get_phone_to_num_pdf_classes())
        self.tm = khg.TransitionModel(ctx_dep=self.tree, hmm_topo=self.topo)
        self.am = am
        self.tid2pdf = np.array([-1] + [int(self.tm.transition_id_to_pdf(t))
                                        for t in range(1, self.tm.num_transition_ids + 1)])
        self.tid2phone = np.array([0] + [int(self.tm.transition_id_to_phone(t))
                                         for t in range(1, self.tm.num_transition_ids + 1)])

    @property
    def num_pdfs(self) -> int:
        return int(self.tm.num_pdfs)

    @classmethod
    def init_mono(cls, topo_text: str, feats: dict[str, np.ndarray]) -> "MonoModel":
        """gmm-init-mono: every pdf one Gaussian with the global mean and variance."""
        m = cls(topo_text)
        x = np.concatenate(list(feats.values())).astype(np.float64)
        mean, var = x.mean(0), np.maximum(x.var(0), 1e-4)
        g = khg.DiagGmm(nmix=1, dim=x.shape[1])
        g.set_weights(np.ones(1, dtype=np.float32))
        g.set_means(mean[None].astype(np.float32))
        g.set_invvars((1.0 / var)[None].astype(np.float32))
        g.compute_gconsts()
        am = khg.AmDiagGmm()
        for _ in range(m.num_pdfs):
            am.add_pdf(g)
        m.am = am
        return m

    # -- persistence: plain tensors, loadable with torch.load(weights_only=True)
    def arrays(self) -> dict:
        """The model as plain numpy arrays and text (what `state_dict` holds, as numpy)."""
        tm_state = self.tm.__getstate__()
        return {"format": "s3prl-hybrid-mono-1", "topo": self.topo_text,
                "transition_log_probs": np.asarray(tm_state[6], dtype=np.float64),
                "non_self_loop_log_probs": np.asarray(tm_state[7], dtype=np.float64),
                "gmm": [np.array(a) for a in self.am.__getstate__()]}

    def state_dict(self) -> dict:
        import torch

        a = self.arrays()
        return {**a, "transition_log_probs": torch.from_numpy(a["transition_log_probs"]),
                "non_self_loop_log_probs": torch.from_numpy(a["non_self_loop_log_probs"]),
                "gmm": [torch.from_numpy(x) for x in a["gmm"]]}

    @classmethod
    def from_state_dict(cls, sd: dict) -> "MonoModel":
        """The model of `state_dict` (torch tensors) or `arrays` (numpy)."""
        m = cls(sd["topo"])
        st = list(m.tm.__getstate__())
        if len(st[6]) != len(sd["transition_log_probs"]):
            raise UserError("model: transition log-probabilities do not match the topology")
        st[6] = np.asarray(sd["transition_log_probs"]).tolist()
        st[7] = np.asarray(sd["non_self_loop_log_probs"]).tolist()
        tm = khg.TransitionModel.__new__(khg.TransitionModel)
        tm.__setstate__(tuple(st))
        m.tm = tm
        am = khg.AmDiagGmm.__new__(khg.AmDiagGmm)
        am.__setstate__(tuple(np.asarray(t) for t in sd["gmm"]))
        for p in range(am.num_pdfs):
            am.get_pdf(p).compute_gconsts()
        m.am = am
        return m

    def __reduce__(self):
        # pickled (to the alignment and decoding worker processes) as its arrays
        return MonoModel.from_state_dict, (self.arrays(),)

    def save(self, path: str | Path) -> None:
        import torch

        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)

    @classmethod
    def load(cls, path: str | Path) -> "MonoModel":
        import torch

        try:
            sd = torch.load(path, weights_only=True)
        except (OSError, RuntimeError, EOFError) as e:
            raise UserError(f"{path}: cannot read the GMM model: {' '.join(str(e).split())[:200]}") from None
        if not isinstance(sd, dict) or sd.get("format") != "s3prl-hybrid-mono-1":
            raise UserError(f"{path}: not a monophone model written by s3prl.hybrid.gmm")
        return cls.from_state_dict(sd)

    def kaldi_text(self) -> str:
        """final.mdl in Kaldi's text format (TransitionModel::Write + AmDiagGmm::Write)."""
        def vec(v):
            return " [ " + " ".join(f"{x:.7g}" for x in np.ravel(v)) + " ]\n"

        def mat(m):
            m = np.atleast_2d(m)
            rows = [" ".join(f"{x:.7g}" for x in r) for r in m]
            return " [\n  " + "\n  ".join(rows) + " ]\n"
        out = [str(self.tm).rstrip() + "\n", f"<DIMENSION> {self.am.dim} <NUMPDFS> {self.am.num_pdfs} "]
        for p in range(self.am.num_pdfs):
            g = self.am.get_pdf(p)
            out += ["<DiagGMM> \n<GCONSTS> ", vec(g.gconsts), "<WEIGHTS> ", vec(g.weights),
                    "<MEANS_INVVARS> ", mat(g.means_invvars), "<INV_VARS> ", mat(g.inv_vars), "</DiagGMM> "]
        return "".join(out) + "\n"

    # -- graphs, alignment, statistics
    def graph_compiler(self, lang_dir: str | Path) -> khg.TrainingGraphCompiler:
        lang = Path(lang_dir)
        L = kaldifst.StdVectorFst.read(str(lang / "L.fst"))
        disambig = [int(x) for x in (lang / "phones" / "disambig.int").read_text().split()]
        return khg.TrainingGraphCompiler(trans_model=self.tm, ctx_dep=self.tree, lex_fst=L,
                                         disambig_syms=disambig, opts=_kaldi_train_graph_opts())

    def align(self, graph: kaldifst.StdVectorFst, feats: np.ndarray, cfg: MonoConfig, beam: float,
              utt: str = "utt") -> list[int]:
        """gmm-align-compiled of one utterance; [] when no path survives the retry beam."""
        fst = graph.copy()
        khg.add_transition_probs(trans_model=self.tm, transition_scale=cfg.transition_scale,
                                 self_loop_scale=cfg.self_loop_scale, fst=fst)
        dec = khg.DecodableAmDiagGmmScaled(am=self.am, tm=self.tm, feats=feats, scale=cfg.acoustic_scale)
        ac = khg.AlignConfig()
        ac.beam, ac.retry_beam, ac.careful = beam, cfg.retry_factor * beam, False
        res = khg.align_utterance_wrapper(config=ac, utt=utt, acoustic_scale=cfg.acoustic_scale, fst=fst,
                                          decodable=dec, num_done=0, num_error=0, num_retried=0,
                                          tot_like=0.0, frame_count=0)
        return list(res[5])

    def accumulate(self, feats: dict[str, np.ndarray], ali: dict[str, list[int]]) -> tuple[dict, np.ndarray, float]:
        """gmm-acc-stats-ali over all utterances: ({pdf: (occ, x, x^2) per Gaussian}, transition
        stats, average log-likelihood per frame)."""
        tstats = np.asarray(self.tm.init_stats(), dtype=np.float64).copy()
        utts = [u for u in feats if u in ali and len(ali[u]) == len(feats[u])]
        if not utts:
            raise UserError("GMM training: no utterance has an alignment")
        tids = np.concatenate([np.asarray(ali[u], dtype=np.int64) for u in utts])
        x = np.concatenate([feats[u] for u in utts]).astype(np.float32)
        tstats += np.bincount(tids, minlength=len(tstats))[:len(tstats)]
        pdfs = self.tid2pdf[tids]
        tot = 0.0
        order = np.argsort(pdfs, kind="stable")
        bounds = np.searchsorted(pdfs[order], np.arange(self.num_pdfs + 1))
        stats = {}
        for p in range(self.num_pdfs):
            idx = order[bounds[p]:bounds[p + 1]]
            if len(idx) == 0:
                continue
            xp = x[idx]
            ll = self.am.get_pdf(p).log_likelihoods_matrix(xp).astype(np.float64)
            mx = ll.max(1, keepdims=True)
            post = np.exp(ll - mx)
            s = post.sum(1, keepdims=True)
            post /= s
            tot += float((mx + np.log(s)).sum())
            xd = xp.astype(np.float64)
            stats[p] = (post.sum(0), post.T @ xd, post.T @ (xd * xd))
        return stats, tstats, tot / len(tids)

    def estimate(self, stats: dict, tstats: np.ndarray, mixup: int, power: float, min_occ: float = 10.0,
                 min_variance: float = 0.001, rng: np.random.Generator | None = None) -> None:
        """gmm-est: transition ML update (MleTransitionUpdate), the diagonal GMMs' ML update
        (MleDiagGmmUpdate: Gaussians under `min_occ` removed, variances floored at `min_variance`)
        and mixing up to `mixup` Gaussians (`split_by_count`, perturbations drawn from `rng`)."""
        self.tm.mle_update(tstats, khg.MleTransitionUpdateConfig())
        occs = np.zeros(self.num_pdfs, dtype=np.float32)
        for p, (occ, m1, m2) in stats.items():
            occs[p] = occ.sum()
            keep = occ >= min_occ
            if not keep.any():
                keep = occ == occ.max()
            occ, m1, m2 = occ[keep], m1[keep], m2[keep]
            mean = m1 / occ[:, None]
            var = np.maximum(m2 / occ[:, None] - mean * mean, min_variance)
            g = self.am.get_pdf(p)
            if g.num_gauss != len(occ):
                g.resize(len(occ), mean.shape[1])
            g.set_weights((occ / occ.sum()).astype(np.float32))
            g.set_means(mean.astype(np.float32))
            g.set_invvars((1.0 / var).astype(np.float32))
            g.compute_gconsts()
        if mixup > self.am.num_gauss:
            split_by_count(self.am, occs, mixup, power=power, min_count=20.0, perturb_factor=0.01,
                           rng=rng if rng is not None else np.random.default_rng(0))


def split_targets(state_occs: np.ndarray, target_components: int, power: float, min_count: float) -> list[int]:
    """Gaussians per pdf after mixing up to `target_components` (Kaldi's GetSplitTargets,
    src/gmm/am-diag-gmm.cc): one each, then repeatedly one more to the pdf of the largest
    ``occ ** power / num_components``; a pdf stops when ``(n + 1) * min_count >= occ``."""
    import heapq

    occ = np.asarray(state_occs, dtype=np.float64)
    n = [1] * len(occ)
    heap = [(-float(o) ** power / 1.0, p) for p, o in enumerate(occ)]
    heapq.heapify(heap)
    total = len(occ)
    while total < target_components and heap:
        _, p = heapq.heappop(heap)
        if (n[p] + 1) * min_count >= occ[p]:
            continue   # min-count reached: this pdf splits no more
        n[p] += 1
        total += 1
        heapq.heappush(heap, (-float(occ[p]) ** power / n[p], p))
    return n


def split_by_count(am: khg.AmDiagGmm, state_occs: np.ndarray, target_components: int, *, power: float,
                   min_count: float, perturb_factor: float, rng: np.random.Generator) -> None:
    """Mix up `am` to about `target_components` Gaussians (Kaldi's AmDiagGmm::SplitByCount and
    DiagGmm::Split, src/gmm/diag-gmm.cc): each split halves the heaviest Gaussian of a pdf and
    moves the two copies' means by -/+ ``perturb_factor * N(0, 1) * stddev``. Kaldi draws the
    perturbations from the C library's unseeded, process-wide rand() (so runs differ); here they
    come from `rng`, seeded by the training config, so training is reproducible."""
    targets = split_targets(state_occs, target_components, power, min_count)
    for p, target in enumerate(targets):
        g = am.get_pdf(p)
        cur = int(g.num_gauss)
        if target <= cur:
            continue
        w = np.zeros(target, dtype=np.float64)
        mean = np.zeros((target, g.dim), dtype=np.float64)
        ivar = np.zeros((target, g.dim), dtype=np.float64)
        w[:cur], mean[:cur], ivar[:cur] = g.weights, g.means, g.inv_vars
        for i in range(cur, target):
            j = int(np.argmax(w[:i]))
            w[j] /= 2
            w[i], ivar[i] = w[j], ivar[j]
            delta = perturb_factor * rng.standard_normal(g.dim) / np.sqrt(ivar[j])
            mean[i] = mean[j] + delta
            mean[j] = mean[j] - delta
        g.resize(target, g.dim)
        g.set_weights(w.astype(np.float32))
        g.set_means(mean.astype(np.float32))
        g.set_invvars(ivar.astype(np.float32))
        g.compute_gconsts()


# ---------------------------------------------------------------------------------------- jobs
def read_text_ids(data_dir: str | Path, lang_dir: str | Path) -> dict[str, list[int]]:
    """``data_dir/text`` as word ids of ``lang_dir/words.txt`` (sym2int.pl --map-oov <UNK>)."""
    words = read_symbols(Path(lang_dir) / "words.txt")
    oov = Path(lang_dir, "oov.txt").read_text().split()[0]
    out = {}
    for utt, text in read_kv(Path(data_dir) / "text", allow_empty_value=True).items():
        out[utt] = [words.get(w, words[oov]) for w in text.split()]
    return out


class AlignJob:
    """One job (``data/split<nj>/JOB``) of train_mono.sh / align_si.sh: its utterances' features
    and training graphs (compile-train-graphs), equal alignment (align-equal-compiled) and Viterbi
    alignment (gmm-align-compiled). Utterances without a transcript are left out."""

    def __init__(self, topo_text: str, lang_dir: str | Path, texts: dict[str, list[int]],
                 feats: dict[str, np.ndarray]):
        self._model = MonoModel(topo_text)   # the compiler keeps references to its tree and transition model
        gc = self._model.graph_compiler(lang_dir)
        self.feats = {u: x for u, x in feats.items() if u in texts}
        self.graphs = {u: gc.compile_graph_from_text(texts[u]) for u in self.feats}

    def equal_align(self, seed: int) -> dict[str, np.ndarray]:
        """A random path of exactly T frames through each training graph."""
        ali = {}
        for u, g in self.graphs.items():
            ok, path = kaldifst.equal_align(ifst=g, length=len(self.feats[u]), rand_seed=seed, num_retries=10)
            if not ok:
                log.warning("equal alignment failed for %s (too few frames for its transcript)", u)
                continue
            ok, isyms, _, _ = kaldifst.get_linear_symbol_sequence(path)
            if ok:
                ali[u] = np.asarray(isyms, dtype=np.int32)
        return ali

    def align(self, model: MonoModel, cfg: MonoConfig, beam: float) -> dict[str, np.ndarray]:
        """{utt: transition ids}; utterances no path reaches within the retry beam are left out."""
        ali = {}
        for u, g in self.graphs.items():
            a = model.align(g, self.feats[u], cfg, beam, utt=u)
            if a:
                ali[u] = np.asarray(a, dtype=np.int32)
        return ali


_WORKER_JOB: AlignJob | None = None


def _worker_init(*args) -> None:
    global _WORKER_JOB
    _WORKER_JOB = AlignJob(*args)


def _worker_call(method: str, args: tuple):
    return getattr(_WORKER_JOB, method)(*args)


class AlignJobs:
    """The ``nj`` jobs of a data dir (Kaldi's ``$cmd JOB=1:$nj``): its utterances split by speaker
    as utils/split_data.sh splits them (at most one job per speaker), each job an AlignJob in its
    own worker process (nj = 1: in this one). Every utterance is aligned on its own, and every
    call's model reaches the jobs as a copy rebuilt from its arrays (MonoModel.__reduce__: pickled
    to a worker, deep-copied when nj = 1; the features and graphs are handed over once and never
    change), so the alignments, and everything computed from them, do not depend on nj. Use as a context manager."""

    def __init__(self, data_dir: str | Path, lang_dir: str | Path, feats: dict[str, np.ndarray], nj: int = 1):
        if nj < 1:
            raise UserError(f"nj {nj}: must be >= 1")
        if not feats:
            raise UserError(f"{Path(data_dir) / 'feats.scp'}: no utterances")
        utt2spk = read_kv(Path(data_dir) / "utt2spk")
        missing = [u for u in feats if u not in utt2spk]
        if missing:
            raise UserError(f"{Path(data_dir) / 'utt2spk'}: no speaker for utterance {missing[0]}")
        utt2spk = {u: utt2spk[u] for u in feats}
        self.nj = min(nj, len(set(utt2spk.values())))
        self.parts = split_by_speaker(utt2spk, self.nj)
        texts = read_text_ids(data_dir, lang_dir)
        topo = Path(lang_dir, "topo").read_text(encoding="utf-8")
        inits = [(topo, str(lang_dir), {u: texts[u] for u in part if u in texts}, {u: feats[u] for u in part})
                 for part in self.parts]
        self._local, self._pools = None, []
        if self.nj == 1:
            self._local = AlignJob(*inits[0])
        else:
            ctx = multiprocessing.get_context("spawn")
            self._pools = [ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=a)
                           for a in inits]

    def _run(self, method: str, *args) -> dict[str, np.ndarray]:
        if self._local is not None:
            parts = [getattr(self._local, method)(*copy.deepcopy(args))]
        else:
            parts = [f.result() for f in [p.submit(_worker_call, method, args) for p in self._pools]]
        return {u: a for part in parts for u, a in part.items()}

    def equal_align(self, seed: int) -> dict[str, np.ndarray]:
        return self._run("equal_align", seed)

    def align(self, model: MonoModel, cfg: MonoConfig, beam: float, what: str = "") -> dict[str, np.ndarray]:
        ali = self._run("align", model, cfg, beam)
        n = sum(len(p) for p in self.parts)
        if len(ali) < n:
            log.warning("%salignment failed for %d of %d utterances", what, n - len(ali), n)
        return ali

    def write(self, ali_dir: Path, ali: dict[str, np.ndarray]) -> None:
        """``ali.JOB.gz`` (each job's utterances) and ``num_jobs``; ali.N.gz of an earlier run
        with more jobs are removed."""
        for j, part in enumerate(self.parts, 1):
            write_alignments(ali_dir / f"ali.{j}.gz", {u: ali[u] for u in part if u in ali})
        atomic_write_text(ali_dir / "num_jobs", f"{self.nj}\n")
        remove_stale_archives(ali_dir, self.nj)

    def close(self) -> None:
        for p in self._pools:
            p.shutdown(cancel_futures=True)
        self._pools = []

    def __enter__(self) -> "AlignJobs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def remove_stale_archives(ali_dir: Path, nj: int) -> None:
    """Remove ``ali.N.gz`` with N > nj (left by an earlier run with more jobs)."""
    for p in alignment_archives(ali_dir):
        if int(p.name.split(".")[1]) > nj:
            p.unlink()


# ---------------------------------------------------------------------------------------- training
def train_mono(data_dir, lang_dir, exp_dir, cfg: MonoConfig | None = None, nj: int = 1) -> dict:
    """steps/train_mono.sh: ``exp_dir/final.pt``, ``final.mdl``, ``ali.JOB.gz`` + ``num_jobs`` of
    the training data, aligned in `nj` jobs (AlignJobs; the result does not depend on nj)."""
    cfg = cfg or MonoConfig()
    exp = Path(exp_dir)
    exp.mkdir(parents=True, exist_ok=True)
    feats = load_feats(data_dir)
    topo_text = Path(lang_dir, "topo").read_text(encoding="utf-8")
    model = MonoModel.init_mono(topo_text, feats)
    with AlignJobs(data_dir, lang_dir, feats, nj) as jobs:
        ali = jobs.equal_align(cfg.seed)
        numgauss = model.am.num_gauss
        incgauss = max(0, (cfg.totgauss - numgauss) // max(1, cfg.max_iter_inc))
        rng = np.random.default_rng(cfg.seed)   # the mixing-up perturbations
        stats, tstats, ll = model.accumulate(feats, ali)
        model.estimate(stats, tstats, mixup=numgauss, power=cfg.power, min_occ=3.0, rng=rng)
        history = [round(ll, 4)]
        beam = cfg.first_beam
        for it in range(1, cfg.num_iters):
            if it in REALIGN_ITERS:
                ali = jobs.align(model, cfg, beam, f"pass {it}: ")
                beam = cfg.beam
            stats, tstats, ll = model.accumulate(feats, ali)
            history.append(round(ll, 4))
            model.estimate(stats, tstats, mixup=numgauss, power=cfg.power, rng=rng)
            if it <= cfg.max_iter_inc:
                numgauss += incgauss
            log.info("mono pass %d: avg log-likelihood %.3f per frame, %d Gaussians", it, ll, model.am.num_gauss)
        ali = jobs.align(model, cfg, cfg.beam, "final: ")
        save_model_dir(model, exp)
        jobs.write(exp, ali)
    return {"utterances": len(feats), "aligned": len(ali), "pdfs": model.num_pdfs,
            "gaussians": int(model.am.num_gauss), "loglike_per_frame": history, "num_jobs": jobs.nj}


def save_model_dir(model: MonoModel, d: Path) -> None:
    model.save(d / "final.pt")
    atomic_write_text(d / "final.mdl", model.kaldi_text())


def align_data(model_dir, data_dir, lang_dir, ali_dir, cfg: MonoConfig | None = None, nj: int = 1) -> dict:
    """steps/align_si.sh: ``ali_dir/ali.JOB.gz`` + ``num_jobs`` (and final.mdl, final.pt) of a
    data dir in `nj` jobs."""
    cfg = cfg or MonoConfig()
    model = MonoModel.load(Path(model_dir) / "final.pt")
    feats = load_feats(data_dir)
    out = Path(ali_dir)
    with AlignJobs(data_dir, lang_dir, feats, nj) as jobs:
        ali = jobs.align(model, cfg, cfg.beam, f"{out}: ")
        out.mkdir(parents=True, exist_ok=True)
        save_model_dir(model, out)
        jobs.write(out, ali)
    return {"utterances": len(feats), "aligned": len(ali), "num_jobs": jobs.nj}


def frame_agreement(model: MonoModel, ali: dict[str, np.ndarray], phones_txt: str | Path,
                    labels: dict[str, np.ndarray], label_phones: list[str]) -> dict:
    """Per-frame phone agreement of alignments with reference phone labels (e.g. the synthetic
    corpus' exact CPC labels); also the agreement of always answering the most frequent label."""
    id2phone = {i: p for p, i in read_symbols(phones_txt).items()}
    name2label = {p: i for i, p in enumerate(label_phones)}
    agree = total = 0
    ref_counts = np.zeros(len(label_phones), dtype=np.int64)
    for u, a in ali.items():
        if u not in labels:
            continue
        ref = np.asarray(labels[u])
        hyp = np.array([name2label.get(id2phone[int(p)], -1) for p in model.tid2phone[np.asarray(a)]])
        n = min(len(ref), len(hyp))
        agree += int((ref[:n] == hyp[:n]).sum())
        total += n
        ref_counts += np.bincount(ref[:n], minlength=len(label_phones))
    if total == 0:
        raise UserError("frame agreement: no aligned utterance has reference labels")
    return {"frames": total, "agreement": agree / total, "majority_baseline": float(ref_counts.max() / total)}
