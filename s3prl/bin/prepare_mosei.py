"""Kaldi data dir (with segments) and sentiment label dir from a CMU-MOSEI-layout corpus.

usage: python -m s3prl.bin.prepare_mosei [options] <corpus-dir> <data-dir> <label-dir>

<corpus-dir>  MOSEI root: Audio/Full/WAV_16000/<video>.wav and labels.csv (s3prl.data.mosei says
              which other layouts and CSV columns are accepted); real corpus or tools/synth/mosei.py.
<data-dir>    output Kaldi data dir: wav.scp (videos), segments, utt2spk, spk2utt, utt2dur, reco2dur.
<label-dir>   output: utt2sentiment, utt2key, train.list, dev.list, test.list, video2split, prep.json.

Keeps segments of 1-20 s with |sentiment| >= 0.1 and splits by video 90/10 train/test (seed 29),
then dev = 10 % of the train videos. Skips the work when both outputs are complete with the same
settings and label table.
"""
from __future__ import annotations

import argparse
import logging

from s3prl.errors import cli_main
from s3prl.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prepare_mosei", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--label-csv", help="label table (default <corpus-dir>/labels.csv)")
    p.add_argument("--audio-dir", help="directory of <video>.wav (default: searched under <corpus-dir>)")
    p.add_argument("--seed", type=int, default=29, help="video split seed (default 29, as S3PRL)")
    p.add_argument("--test-proportion", type=float, default=0.1)
    p.add_argument("--dev-proportion", type=float, default=0.1, help="share of the train videos held out as dev")
    p.add_argument("--min-duration", type=float, default=1.0)
    p.add_argument("--max-duration", type=float, default=20.0)
    p.add_argument("--min-abs-score", type=float, default=0.1)
    p.add_argument("--skip-missing-audio", action="store_true",
                   help="drop segments of videos without audio (default: an error)")
    p.add_argument("corpus_dir")
    p.add_argument("data_dir")
    p.add_argument("label_dir")
    a = p.parse_args(argv)
    setup_logging()
    from s3prl.data.mosei import PrepSettings, prepare_mosei

    settings = PrepSettings(seed=a.seed, test_proportion=a.test_proportion, dev_proportion=a.dev_proportion,
                            min_duration=a.min_duration, max_duration=a.max_duration, min_abs_score=a.min_abs_score)
    c = prepare_mosei(a.corpus_dir, a.data_dir, a.label_dir, label_csv=a.label_csv, audio_dir=a.audio_dir,
                      settings=settings, skip_missing_audio=a.skip_missing_audio)
    logging.info("%s%s: %d of %d segments kept from %d videos; train %d, dev %d, test %d utterances",
                 "complete, nothing to do: " if c.get("skipped") else "", a.data_dir, c.get("kept", 0),
                 c.get("segments", 0), c.get("videos", 0), c.get("train", 0), c.get("dev", 0), c.get("test", 0))
    return 0


if __name__ == "__main__":
    cli_main(main)
