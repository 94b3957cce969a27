"""Hybrid DNN-HMM speech recognition on the pip-installable next-generation Kaldi libraries.

Kaldi's monophone HMM-GMM recipe (kaldi-asr/kaldi egs/mini_librispeech/s5/run.sh: prepare_lang.sh,
format_lm.sh, steps/train_mono.sh, steps/align_si.sh, utils/mkgraph.sh, steps/decode.sh) rebuilt on
k2-fsa's Python packages: ``kaldi-hmm-gmm`` (transition model, diagonal GMMs, training-graph
compiler, Viterbi alignment, lattice-faster decoder), ``kaldifst`` (OpenFst), ``kaldilm`` (ARPA ->
G.fst) and ``kaldialign`` (edit distance). Modules: ``lang`` (lexicon, L/G/HCLG), ``gmm``
(monophone training and alignment), ``decode`` (decoding and Kaldi-style scoring), ``dnn`` (the
frame-level DNN on the alignments' pdf targets).

``kaldi_hmm_gmm`` must be imported before ``kaldilm``: the other order deadlocks at import
(kaldi-hmm-gmm 1.1.4, kaldilm 1.15.5), so this package imports it first.
"""
import kaldi_hmm_gmm  # noqa: F401  (import order, see above)
