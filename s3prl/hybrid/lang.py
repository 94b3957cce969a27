"""Lang directories and decoding graphs in Kaldi's formats: lexicon -> ``data/lang`` (L.fst,
L_disambig.fst, phones.txt, words.txt, topo), training transcripts -> an ARPA n-gram LM ->
``data/lang_test`` (G.fst), and a monophone model -> ``exp/mono/graph/HCLG.fst``.

Follows Kaldi's scripts (kaldi-asr/kaldi): utils/prepare_lang.sh (position-independent phones,
``--position-dependent-phones false``; silence phones SIL and SPN; disambiguation symbols from
utils/add_lex_disambig.pl, one more for silence), utils/lang/make_lexicon_fst.py (optional
silence, ``--sil-prob 0.5``, ``--sil-disambig``), fstaddselfloops for ``#0``, utils/format_lm.sh
(arpa2fst ``--disambig-symbol=#0``) and utils/mkgraph.sh (``LG = det(L o G)``, ``CLG``, ``Ha``,
``HCLGa = rmsymbols(det(Ha o CLG))``, add-self-loops with ``--self-loop-scale 0.1``). FSTs are
written in OpenFst's binary format, so Kaldi's and OpenFst's tools read them.

The LM is a trigram with interpolated absolute discounting (Ney, Essen & Kneser 1994, "On
structuring probabilistic dependences in stochastic language modelling", Computer Speech and
Language 8) written as a backoff ARPA file; its unigram level is interpolated with a uniform
distribution over the whole lexicon, so every lexicon word can be recognised (a closed-vocabulary
LM, like LibriSpeech's lexicon-wide 3-gram).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

import kaldi_hmm_gmm as khg  # noqa: F401  (before kaldilm, see s3prl/hybrid/__init__.py)
import kaldifst
import kaldilm

from s3prl.atomic import atomic_path, atomic_write_text
from s3prl.errors import UserError

SILENCE_PHONES = ("SIL", "SPN")
OPTIONAL_SILENCE = "SIL"
OOV_WORD = "<UNK>"
SIL_PROB = 0.5
NUM_NONSIL_STATES = 3
NUM_SIL_STATES = 5


# ---------------------------------------------------------------------------------------- lexicon
def read_lexicon(path: str | Path) -> list[tuple[str, list[str]]]:
    """Kaldi ``lexicon.txt``: ``WORD PHONE ...`` per line (a word may have several lines)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read the lexicon: {e.strerror}") from None
    out, seen = [], set()
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise UserError(f"{path}:{n}: word '{parts[0]}' has no phones")
        if parts[0].startswith("#") or parts[0] in ("<eps>", "<s>", "</s>"):
            raise UserError(f"{path}:{n}: '{parts[0]}' is a reserved symbol, not a word")
        for p in parts[1:]:
            if p.startswith("#") or p == "<eps>":
                raise UserError(f"{path}:{n}: phone '{p}' is a reserved symbol")
        if (parts[0], tuple(parts[1:])) in seen:
            continue
        seen.add((parts[0], tuple(parts[1:])))
        out.append((parts[0], parts[1:]))
    if not out:
        raise UserError(f"{path}: the lexicon is empty")
    if not any(w == OOV_WORD for w, _ in out):
        raise UserError(f"{path}: the lexicon has no entry for the OOV word {OOV_WORD} (e.g. '{OOV_WORD} SPN')")
    return out


def add_lex_disambig(lexicon: list[tuple[str, list[str]]]) -> tuple[list[tuple[str, list[str]]], int]:
    """utils/add_lex_disambig.pl: ``#1, #2 ...`` after pronunciations that are a prefix of another
    or occur more than once. Returns (lexicon with disambig symbols, the largest index used)."""
    count = Counter(tuple(p) for _, p in lexicon)
    prefixes = {tuple(p[:i]) for _, p in lexicon for i in range(1, len(p))}
    last: dict[tuple[str, ...], int] = defaultdict(int)
    out, max_d = [], 0
    for w, p in lexicon:
        key = tuple(p)
        if key not in prefixes and count[key] == 1:
            out.append((w, list(p)))
            continue
        last[key] += 1
        max_d = max(max_d, last[key])
        out.append((w, list(p) + [f"#{last[key]}"]))
    return out, max_d


def read_symbols(path: str | Path) -> dict[str, int]:
    """A Kaldi/OpenFst symbol table ``SYMBOL ID`` -> {symbol: id}."""
    out = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise UserError(f"{path}:{n}: expected 'SYMBOL ID', got {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def _write_symbols(path: Path, symbols: list[str]) -> None:
    atomic_write_text(path, "".join(f"{s} {i}\n" for i, s in enumerate(symbols)))


def hmm_topology(nonsil: list[int], sil: list[int]) -> str:
    """Kaldi's topology text (utils/gen_topo.pl): 3-state left-to-right non-silence phones, 5-state
    silence phones whose inner states are fully connected."""
    s = ["<Topology>", "<TopologyEntry>", "<ForPhones>", " ".join(map(str, nonsil)), "</ForPhones>"]
    for i in range(NUM_NONSIL_STATES):
        s.append(f"<State> {i} <PdfClass> {i} <Transition> {i} 0.75 <Transition> {i + 1} 0.25 </State>")
    s += [f"<State> {NUM_NONSIL_STATES} </State>", "</TopologyEntry>"]
    n = NUM_SIL_STATES
    tp = 1.0 / (n - 1)
    s += ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, sil)), "</ForPhones>"]
    s.append("<State> 0 <PdfClass> 0 " + " ".join(f"<Transition> {i} {tp}" for i in range(n - 1)) + " </State>")
    for i in range(1, n - 1):
        s.append(f"<State> {i} <PdfClass> {i} " + " ".join(f"<Transition> {k} {tp}" for k in range(1, n)) + " </State>")
    s.append(f"<State> {n - 1} <PdfClass> {n - 1} <Transition> {n - 1} 0.75 <Transition> {n} 0.25 </State>")
    s += [f"<State> {n} </State>", "</TopologyEntry>", "</Topology>"]
    return "\n".join(s) + "\n"


def read_topology(lang_dir: str | Path) -> khg.HmmTopology:
    topo = khg.HmmTopology()
    topo.read(Path(lang_dir, "topo").read_text(encoding="utf-8"))
    return topo


def _lexicon_fst(lexicon: list[tuple[str, list[str]]], phone_id: dict[str, int], word_id: dict[str, int],
                 sil_disambig: int | None, wdisambig: tuple[int, int] | None) -> kaldifst.StdVectorFst:
    """utils/lang/make_lexicon_fst.py with optional silence (states: start, loop, silence)."""
    sil_cost, nosil_cost = -math.log(SIL_PROB), -math.log(1.0 - SIL_PROB)
    fst = kaldifst.StdVectorFst()
    start, loop, sil_state = fst.add_state(), fst.add_state(), fst.add_state()
    fst.start = start
    fst.set_final(state=loop, weight=0.0)

    def arc(src, i, o, w, dst):
        fst.add_arc(state=src, arc=kaldifst.StdArc(ilabel=i, olabel=o, weight=w, nextstate=dst))

    arc(start, 0, 0, nosil_cost, loop)
    arc(start, 0, 0, sil_cost, sil_state)
    sil = phone_id[OPTIONAL_SILENCE]
    if sil_disambig is None:
        arc(sil_state, sil, 0, 0.0, loop)
    else:
        d = fst.add_state()
        arc(sil_state, sil, 0, 0.0, d)
        arc(d, sil_disambig, 0, 0.0, loop)
    for word, phones in lexicon:
        cur = loop
        for i, p in enumerate(phones[:-1]):
            nxt = fst.add_state()
            arc(cur, phone_id[p], word_id[word] if i == 0 else 0, 0.0, nxt)
            cur = nxt
        last = phone_id[phones[-1]]
        olab = word_id[word] if len(phones) == 1 else 0
        arc(cur, last, olab, nosil_cost, loop)
        arc(cur, last, olab, sil_cost, sil_state)
    if wdisambig is not None:  # fstaddselfloops: #0 passes G's backoff arcs through L
        arc(loop, wdisambig[0], wdisambig[1], 0.0, loop)
    return fst


def prepare_lang(lexicon_path: str | Path, lang_dir: str | Path, phone_set: list[str] | None = None) -> dict:
    """Write ``lang_dir`` (utils/prepare_lang.sh's layout, position-independent phones). The
    phones are `phone_set` (e.g. the 41 label classes, so every class gets HMM states) or, when
    None, those the lexicon uses; a lexicon phone outside `phone_set` is an error."""
    lang = Path(lang_dir)
    lexicon = read_lexicon(lexicon_path)
    phones_used = sorted({p for _, ps in lexicon for p in ps})
    if phone_set is not None:
        unknown = sorted(set(phones_used) - set(phone_set))
        if unknown:
            raise UserError(f"{lexicon_path}: phone '{unknown[0]}' is not in the phone set ({len(unknown)} unknown)")
        phones_used = sorted(set(phone_set))
    nonsil = [p for p in phones_used if p not in SILENCE_PHONES]
    if not nonsil:
        raise UserError(f"{lexicon_path}: the lexicon has no non-silence phones")
    lex_d, max_d = add_lex_disambig(lexicon)
    ndisambig = max_d + 1  # one more for the silence disambiguation symbol
    disambig = [f"#{i}" for i in range(ndisambig + 1)]
    phones = ["<eps>", *SILENCE_PHONES, *nonsil, *disambig]
    phone_id = {p: i for i, p in enumerate(phones)}
    words = sorted({w for w, _ in lexicon} | {"!SIL"})
    word_list = ["<eps>", *[w for w in words], "#0", "<s>", "</s>"]
    word_id = {w: i for i, w in enumerate(word_list)}
    (lang / "phones").mkdir(parents=True, exist_ok=True)
    _write_symbols(lang / "phones.txt", phones)
    _write_symbols(lang / "words.txt", word_list)
    sil_ids = [phone_id[p] for p in SILENCE_PHONES]
    nonsil_ids = [phone_id[p] for p in nonsil]
    atomic_write_text(lang / "topo", hmm_topology(nonsil_ids, sil_ids))
    sets = {"silence": list(SILENCE_PHONES), "nonsilence": nonsil, "optional_silence": [OPTIONAL_SILENCE],
            "disambig": disambig, "context_indep": list(SILENCE_PHONES)}
    for name, items in sets.items():
        atomic_write_text(lang / "phones" / f"{name}.txt", "".join(f"{p}\n" for p in items))
        atomic_write_text(lang / "phones" / f"{name}.int", "".join(f"{phone_id[p]}\n" for p in items))
    atomic_write_text(lang / "phones" / "wdisambig_words.int", f"{word_id['#0']}\n")
    atomic_write_text(lang / "oov.txt", f"{OOV_WORD}\n")
    atomic_write_text(lang / "oov.int", f"{word_id[OOV_WORD]}\n")
    lex_text = "".join(f"{w} {' '.join(p)}\n" for w, p in lexicon)
    atomic_write_text(lang / "lexicon.txt", lex_text)
    L = _lexicon_fst(lexicon, phone_id, word_id, None, None)
    kaldifst.arcsort(L, sort_type="olabel")
    Ld = _lexicon_fst(lex_d, phone_id, word_id, phone_id[f"#{ndisambig}"], (phone_id["#0"], word_id["#0"]))
    kaldifst.arcsort(Ld, sort_type="olabel")
    for name, f in (("L.fst", L), ("L_disambig.fst", Ld)):
        with atomic_path(lang / name) as tmp:
            if not f.write(str(tmp)):
                raise UserError(f"{lang / name}: cannot write")
    return {"phones": len(SILENCE_PHONES) + len(nonsil), "words": len(words), "disambig": len(disambig)}


def disambig_phone_ids(lang_dir: str | Path) -> list[int]:
    return [int(x) for x in Path(lang_dir, "phones", "disambig.int").read_text().split()]


# ---------------------------------------------------------------------------------------- LM
def _fmt(x: float) -> str:
    return f"{x:.6f}"


def train_arpa(sentences: Iterable[list[str]], vocab: Iterable[str], order: int = 3,
               discount: float = 0.5) -> str:
    """ARPA text of an interpolated absolute-discounting n-gram LM (see the module docstring)."""
    if order < 1:
        raise UserError(f"LM order must be >= 1, got {order}")
    vocab = sorted(set(vocab) - {"<s>", "</s>", "<eps>"})
    counts: list[Counter] = [Counter() for _ in range(order + 1)]
    for sent in sentences:
        toks = ["<s>"] + list(sent) + ["</s>"]
        for n in range(1, order + 1):
            for i in range(max(1, n - 1), len(toks)):  # n-grams ending after <s>
                counts[n][tuple(toks[i - n + 1:i + 1])] += 1
    # unigram: discounted ML over the training tokens (no <s>) + uniform over the vocabulary
    uni = counts[1]
    total = sum(uni.values())
    targets = vocab + ["</s>"]
    probs: list[dict[tuple, float]] = [dict() for _ in range(order + 1)]
    if total == 0:
        for w in targets:
            probs[1][(w,)] = 1.0 / len(targets)
    else:
        lam = discount * len(uni) / total
        for w in targets:
            probs[1][(w,)] = max(uni.get((w,), 0) - discount, 0) / total + lam / len(targets)
    ctx_total: list[Counter] = [Counter() for _ in range(order + 1)]
    ctx_types: list[Counter] = [Counter() for _ in range(order + 1)]
    for n in range(2, order + 1):
        for g, c in counts[n].items():
            ctx_total[n][g[:-1]] += c
            ctx_types[n][g[:-1]] += 1

    def p_interp(g: tuple) -> float:
        n = len(g)
        if n == 1:
            return probs[1].get(g, 0.0)
        h = g[:-1]
        ct = ctx_total[n].get(h, 0)
        lower = p_interp(g[1:])
        if ct == 0:
            return lower
        return max(counts[n].get(g, 0) - discount, 0) / ct + discount * ctx_types[n][h] / ct * lower

    for n in range(2, order + 1):
        for g in counts[n]:
            probs[n][g] = p_interp(g)
    # backoff weights of every context that has continuations
    bows: dict[tuple, float] = {}
    for n in range(2, order + 1):
        seen = defaultdict(list)
        for g in probs[n]:
            seen[g[:-1]].append(g)
        for h, gs in seen.items():
            num = 1.0 - sum(probs[n][g] for g in gs)
            den = 1.0 - sum(p_interp(g[1:]) for g in gs)
            bows[h] = num / den if den > 1e-12 and num > 1e-12 else 1e-12
    lines = ["", "\\data\\"]
    n_uni = len(targets) + 1
    lines.append(f"ngram 1={n_uni}")
    for n in range(2, order + 1):
        lines.append(f"ngram {n}={len(probs[n])}")
    lines += ["", "\\1-grams:"]
    lb = lambda h: f"\t{_fmt(math.log10(bows[h]))}" if h in bows else ""  # noqa: E731
    lines.append(f"-99\t<s>{lb(('<s>',))}")
    for w in targets:
        lines.append(f"{_fmt(math.log10(probs[1][(w,)]))}\t{w}{lb((w,))}")
    for n in range(2, order + 1):
        lines += ["", f"\\{n}-grams:"]
        for g in sorted(probs[n]):
            lines.append(f"{_fmt(math.log10(probs[n][g]))}\t{' '.join(g)}{lb(g) if n < order else ''}")
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def read_transcripts(text_path: str | Path, known: set[str]) -> list[list[str]]:
    """A data dir's ``text`` as word lists; words outside `known` become the OOV word."""
    out = []
    for n, line in enumerate(Path(text_path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        out.append([w if w in known else OOV_WORD for w in parts[1:]])
    if not out:
        raise UserError(f"{text_path}: no transcripts")
    return out


def format_lm(lang_dir: str | Path, text_path: str | Path, out_dir: str | Path, order: int = 3) -> dict:
    """utils/format_lm.sh: copy ``lang_dir`` to ``out_dir`` with ``G.fst`` from an LM trained on
    `text_path` (kept as ``out_dir/lm.arpa``)."""
    lang, out = Path(lang_dir), Path(out_dir)
    words = read_symbols(lang / "words.txt")
    vocab = {w for w in words if w not in ("<eps>", "#0", "<s>", "</s>", "!SIL")}
    sents = read_transcripts(text_path, vocab)
    arpa = train_arpa(sents, vocab, order=order)
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(lang.rglob("*")):
        if f.is_file():
            dst = out / f.relative_to(lang)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as tmp:
                tmp.write_bytes(f.read_bytes())
    atomic_write_text(out / "lm.arpa", arpa)
    with atomic_path(out / "G.fst") as tmp:
        kaldilm.arpa2fst(input_arpa=str(out / "lm.arpa"), output_fst=str(tmp), disambig_symbol="#0",
                         read_symbol_table=str(lang / "words.txt"), max_arpa_warnings=0)
    oov = sum(w == OOV_WORD for s in sents for w in s)
    return {"sentences": len(sents), "order": order, "training_oov_tokens": oov}


# ---------------------------------------------------------------------------------------- graph
def _rm_symbols(fst: kaldifst.StdVectorFst, symbols: set[int]) -> kaldifst.StdVectorFst:
    """fstrmsymbols: replace the input labels in `symbols` by epsilon."""
    lines = []
    for line in fst.to_str(show_weight_one=True).splitlines():
        parts = line.split()
        if len(parts) >= 4 and int(parts[2]) in symbols:
            parts[2] = "0"
        lines.append("\t".join(parts))
    return kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False)


def make_graph(lang_dir: str | Path, tree: khg.ContextDependency, trans_model: khg.TransitionModel,
               graph_dir: str | Path, self_loop_scale: float = 0.1) -> dict:
    """utils/mkgraph.sh: ``graph_dir/HCLG.fst`` (+ words.txt, phones.txt, phones/) from
    ``lang_dir`` (with G.fst) and a model's tree and transition model."""
    lang, graph = Path(lang_dir), Path(graph_dir)
    L = kaldifst.StdVectorFst.read(str(lang / "L_disambig.fst"))
    G = kaldifst.StdVectorFst.read(str(lang / "G.fst"))
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.compose(L, G)
    kaldifst.determinize_star(LG, use_log=True)
    kaldifst.minimize_encoded(LG)
    kaldifst.arcsort(LG, sort_type="ilabel")
    disambig = disambig_phone_ids(lang)
    CLG, ilabels = kaldifst.compose_context(disambig_syms=disambig, context_width=tree.context_width,
                                            central_position=tree.central_position, ifst=LG)
    kaldifst.arcsort(CLG, sort_type="ilabel")
    Ha, disambig_tids = khg.get_h_transducer(ilabel_info=ilabels, ctx_dep=tree, trans_model=trans_model,
                                             config=khg.HTransducerConfig(transition_scale=1.0))
    HCLGa = kaldifst.compose(Ha, CLG)
    kaldifst.determinize_star(HCLGa, use_log=True)
    HCLGa = _rm_symbols(HCLGa, set(disambig_tids))
    kaldifst.rmepsilon(HCLGa)
    kaldifst.minimize_encoded(HCLGa)
    HCLG = khg.add_self_loops(self_loop_scale=self_loop_scale, disambig_syms=[], reorder=True,
                              trans_model=trans_model, ifst=HCLGa)
    kaldifst.arcsort(HCLG, sort_type="ilabel")
    graph.mkdir(parents=True, exist_ok=True)
    with atomic_path(graph / "HCLG.fst") as tmp:
        if not HCLG.write(str(tmp)):
            raise UserError(f"{graph / 'HCLG.fst'}: cannot write")
    for name in ("words.txt", "phones.txt"):
        atomic_write_text(graph / name, (lang / name).read_text(encoding="utf-8"))
    (graph / "phones").mkdir(exist_ok=True)
    for f in (lang / "phones").iterdir():
        atomic_write_text(graph / "phones" / f.name, f.read_text(encoding="utf-8"))
    return {"states": HCLG.num_states, "arcs": sum(HCLG.num_arcs(s) for s in range(HCLG.num_states))}


def word_symbols(lang_dir: str | Path) -> dict[int, str]:
    return {i: w for w, i in read_symbols(Path(lang_dir) / "words.txt").items()}

