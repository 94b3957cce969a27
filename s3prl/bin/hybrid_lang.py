"""Build Kaldi lang dirs for the hybrid system: ``<lang>`` (utils/prepare_lang.sh) and
``<lang-test>`` with G.fst from an n-gram LM of the training transcripts (utils/format_lm.sh; the
ARPA file is kept as ``<lang-test>/lm.arpa``). See s3prl.hybrid.lang.

usage: python -m s3prl.bin.hybrid_lang --lexicon FILE --text DATA/text [--phones PHONES.txt]
           [--lm-order 3] <lang> <lang-test>

--phones: a ``ID PHONE`` or ``PHONE`` list (e.g. the CPC label dir's phones.txt) whose phones all
get HMMs. A lang dir pair already made from the same inputs says "complete" and does nothing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from s3prl.atomic import StageLock, atomic_write_text, file_sha256
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging


def read_phone_list(path: str | Path) -> list[str]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            raise UserError(f"{path}:{n}: expected 'ID PHONE' or 'PHONE'")
        out.append(parts[-1])
    if not out:
        raise UserError(f"{path}: no phones")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hybrid_lang", description=__doc__.split("\n")[0])
    p.add_argument("--lexicon", required=True, help="lexicon.txt (WORD PHONE ...)")
    p.add_argument("--text", required=True, help="training transcripts (Kaldi text) for the LM")
    p.add_argument("--phones", help="phone list whose phones all get HMMs (default: the lexicon's)")
    p.add_argument("--lm-order", type=int, default=3)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("lang")
    p.add_argument("lang_test")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    from s3prl.hybrid import lang as L

    for f in (a.lexicon, a.text, a.phones):
        if f and not Path(f).is_file():
            raise UserError(f"{f}: no such file")
    stamp = {"lexicon": file_sha256(a.lexicon), "text": file_sha256(a.text),
             "phones": file_sha256(a.phones) if a.phones else None, "lm_order": a.lm_order}
    done = Path(a.lang_test) / "lang_inputs.json"
    if done.is_file() and json.loads(done.read_text()) == stamp:
        print(f"hybrid_lang: {a.lang} and {a.lang_test} complete")
        return 0
    Path(a.lang_test).mkdir(parents=True, exist_ok=True)
    with StageLock(a.lang_test, "hybrid_lang"):
        phones = read_phone_list(a.phones) if a.phones else None
        info = L.prepare_lang(a.lexicon, a.lang, phones)
        info.update(L.format_lm(a.lang, a.text, a.lang_test, order=a.lm_order))
        atomic_write_text(done, json.dumps(stamp, indent=1) + "\n")
    print(f"hybrid_lang: {a.lang} ({info['phones']} phones, {info['words']} words), {a.lang_test} "
          f"(order-{info['order']} LM of {info['sentences']} transcripts)")
    return 0


if __name__ == "__main__":
    cli_main(main)
