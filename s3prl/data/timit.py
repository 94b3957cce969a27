"""TIMIT (LDC93S1) -> Kaldi data directories, following Kaldi's `egs/timit/s5` conventions
(`local/timit_data_prep.sh`, `conf/{dev,test}_spk.list`, `conf/phones.60-48-39.map`).

TIMIT is 630 speakers of 8 US dialect regions reading 10 sentences each, 16 kHz 16-bit NIST
SPHERE audio with time-aligned phone (.PHN), word (.WRD) and text (.TXT) transcriptions.
Expected layout (upper or lower case, with or without a `TIMIT/` level)::

    <timit-dir>/[TIMIT/]TRAIN/DR1/FCJF0/SA1.WAV   (+ SA1.PHN, SA1.WRD, SA1.TXT)
    <timit-dir>/[timit/]test/dr1/faks0/si943.wav ...

Kaldi's standard sets, reproduced here:
- the SA ("dialect calibration") sentences are removed (every speaker reads the same two);
- train = every TRAIN speaker (462 speakers, 3696 utterances);
- dev = the 50 TEST speakers of `DEV_SPEAKERS` (400 utterances);
- test = the 24-speaker core test set `CORE_TEST_SPEAKERS` (192 utterances);
- `text` holds the phone transcription from the .PHN file, 61 TIMIT phones mapped to the 48
  training phones of Lee & Hon (1989) by `PHONE_MAP` (Kaldi's phones.60-48-39.map); the glottal
  stop `q` has no mapping and is deleted. `phones=39` or `phones=60` write the other columns.

Our data-dir rules (docs/formats.md) replace Kaldi's `spk_utt` ids with `spk-utt` (speaker prefix
joined with '-': e.g. `fcjf0-si1027`), lower case. The wav.scp value is the absolute SPHERE path,
which libsndfile (our audio reader) decodes directly; `wav_format="sph2pipe"` writes Kaldi's
`sph2pipe -f wav PATH |` and `wav_format="sox"` writes `sox PATH -t wav - |`, for Kaldi tools.
Shorten-compressed SPHERE (some TIMIT copies) is not readable by libsndfile: use sph2pipe.
Files written to `data/{train,dev,test}/`: wav.scp, text, utt2spk, spk2utt, spk2gender, utt2dur,
and Kaldi's sclite reference pair for PyTorch-Kaldi's / Kaldi's TIMIT scorer (`local/score.sh`,
which maps the reference 48 -> 39 phones and runs hubscr.pl on it):
- `stm`: three `;; LABEL` lines (O Overall, F Female, M Male), then per utterance
  `<utt> 1 <spk> 0.0 <duration, %f> <O,F|M> <48-phone transcription>` (always the 48-phone set,
  whatever `phones` says, since the scorer maps from 48);
- `glm`: Kaldi's empty GLM (one dummy `[FAKE] => %HESITATION` rule).
"""
from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

import soundfile as sf

from s3prl.atomic import atomic_write_text
from s3prl.data.kaldi_dir import sorted_c, validate_data_dir, write_data_dir
from s3prl.errors import UserError

log = logging.getLogger(__name__)

# Kaldi egs/timit/s5/conf/dev_spk.list: the 50-speaker development set (Halberstadt 1998).
DEV_SPEAKERS = frozenset("""
faks0 fdac1 fjem0 mgwt0 mjar0 mmdb1 mmdm2 mpdf0 fcmh0 fkms0 mbdg0 mbwm0 mcsh0 fadg0 fdms0 fedw0
mgjf0 mglb0 mrtk0 mtaa0 mtdt0 mthc0 mwjg0 fnmr0 frew0 fsem0 mbns0 mmjr0 mdls0 mdlf0 mdvc0 mers0
fmah0 fdrw0 mrcs0 mrjm4 fcal1 mmwh0 fjsj0 majc0 mjsw0 mreb0 fgjd0 fjmg0 mroa0 mteb0 mjfc0 mrjr0
fmml0 mrws1
""".split())

# Kaldi egs/timit/s5/conf/test_spk.list: the 24-speaker core test set (2 male + 1 female per DR).
CORE_TEST_SPEAKERS = frozenset("""
mdab0 mwbt0 felc0 mtas1 mwew0 fpas0 mjmp0 mlnt0 fpkt0 mlll0 mtls0 fjlm0 mbpm0 mklt0 fnlp0 mcmj0
mjdh0 fmgd0 mgrt0 mnjm0 fdhc0 mjln0 mpam0 fmld0
""".split())

# Kaldi egs/timit/s5/conf/phones.60-48-39.map: TIMIT phone -> (48-phone set, 39-phone set).
# `q` (glottal stop) maps to nothing and is deleted, as Kaldi does.
PHONE_MAP: dict[str, tuple[str, str] | None] = {
    "aa": ("aa", "aa"), "ae": ("ae", "ae"), "ah": ("ah", "ah"), "ao": ("ao", "aa"),
    "aw": ("aw", "aw"), "ax": ("ax", "ah"), "ax-h": ("ax", "ah"), "axr": ("er", "er"),
    "ay": ("ay", "ay"), "b": ("b", "b"), "bcl": ("vcl", "sil"), "ch": ("ch", "ch"),
    "d": ("d", "d"), "dcl": ("vcl", "sil"), "dh": ("dh", "dh"), "dx": ("dx", "dx"),
    "eh": ("eh", "eh"), "el": ("el", "l"), "em": ("m", "m"), "en": ("en", "n"),
    "eng": ("ng", "ng"), "epi": ("epi", "sil"), "er": ("er", "er"), "ey": ("ey", "ey"),
    "f": ("f", "f"), "g": ("g", "g"), "gcl": ("vcl", "sil"), "h#": ("sil", "sil"),
    "hh": ("hh", "hh"), "hv": ("hh", "hh"), "ih": ("ih", "ih"), "ix": ("ix", "ih"),
    "iy": ("iy", "iy"), "jh": ("jh", "jh"), "k": ("k", "k"), "kcl": ("cl", "sil"),
    "l": ("l", "l"), "m": ("m", "m"), "n": ("n", "n"), "ng": ("ng", "ng"),
    "nx": ("n", "n"), "ow": ("ow", "ow"), "oy": ("oy", "oy"), "p": ("p", "p"),
    "pau": ("sil", "sil"), "pcl": ("cl", "sil"), "q": None, "r": ("r", "r"),
    "s": ("s", "s"), "sh": ("sh", "sh"), "t": ("t", "t"), "tcl": ("cl", "sil"),
    "th": ("th", "th"), "uh": ("uh", "uh"), "uw": ("uw", "uw"), "ux": ("uw", "uw"),
    "v": ("v", "v"), "w": ("w", "w"), "y": ("y", "y"), "z": ("z", "z"), "zh": ("zh", "sh"),
}

SETS = ("train", "dev", "test")
WAV_FORMATS = ("path", "sph2pipe", "sox")
_SPK_RE = re.compile(r"^[fm][a-z]{3}[0-9]$")
_UTT_RE = re.compile(r"^s[aix][0-9]+$")


def map_phones(phones: list[str], to: int = 48, where: str = "") -> list[str]:
    """Map TIMIT phones to the 48 (or 39, or 60 = unchanged minus `q`) phone set."""
    if to not in (60, 48, 39):
        raise UserError(f"phones: {to} is not one of 60, 48, 39")
    out = []
    for ph in phones:
        if ph not in PHONE_MAP:
            raise UserError(f"{where}: unknown TIMIT phone {ph!r}")
        m = PHONE_MAP[ph]
        if m is None:
            continue
        out.append(ph if to == 60 else m[0] if to == 48 else m[1])
    return out


def read_phn(path: Path) -> list[str]:
    """A .PHN file (`BEGIN_SAMPLE END_SAMPLE PHONE` lines) -> the phone labels in order."""
    phones = []
    prev_end = None
    for lineno, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise UserError(f"{path}:{lineno}: expected 'BEGIN END PHONE', got {line.strip()!r}")
        b, e = int(parts[0]), int(parts[1])
        if e <= b or (prev_end is not None and b < prev_end - 1):
            raise UserError(f"{path}:{lineno}: bad segment times {b} {e}")
        prev_end = e
        phones.append(parts[2].lower())
    if not phones:
        raise UserError(f"{path}: empty phone transcription")
    return phones


def read_sphere_header(path: Path) -> dict[str, str | int]:
    """Fields of a NIST SPHERE header (`NIST_1A`, header size, `key -type value` ... `end_head`).

    Returns e.g. {'sample_rate': 16000, 'sample_count': 46797, 'channel_count': 1,
    'sample_coding': 'pcm', 'header_bytes': 1024}. Integer fields (`-i`) are ints.
    """
    with open(path, "rb") as f:
        head = f.read(1024)
        if not head.startswith(b"NIST_1A"):
            raise UserError(f"{path}: not a NIST SPHERE file (no NIST_1A header)")
        lines = head.split(b"\n")
        try:
            size = int(lines[1].strip())
        except (IndexError, ValueError):
            raise UserError(f"{path}: malformed SPHERE header size line") from None
        if size > len(head):
            head += f.read(size - len(head))
    fields: dict[str, str | int] = {"header_bytes": size}
    for raw in head[:size].split(b"\n")[2:]:
        line = raw.decode("ascii", errors="replace").strip()
        if line == "end_head":
            return fields
        if not line or line.startswith(";"):
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or not parts[1].startswith("-"):
            raise UserError(f"{path}: malformed SPHERE header line {line!r}")
        key, typ, value = parts
        fields[key] = int(value) if typ == "-i" else value
    raise UserError(f"{path}: SPHERE header has no end_head")


def _audio_info(path: Path) -> tuple[float, bool]:
    """(duration in seconds, is shorten-compressed) of a TIMIT .WAV (SPHERE, or RIFF in some copies)."""
    with open(path, "rb") as f:
        magic = f.read(7)
    if magic == b"NIST_1A":
        h = read_sphere_header(path)
        rate, count = h.get("sample_rate"), h.get("sample_count")
        if not isinstance(rate, int) or not isinstance(count, int) or rate <= 0 or count <= 0:
            raise UserError(f"{path}: SPHERE header lacks a valid sample_rate / sample_count")
        if int(h.get("channel_count", 1)) != 1:
            raise UserError(f"{path}: expected mono audio, header says channel_count {h.get('channel_count')}")
        shorten = "shorten" in str(h.get("sample_coding", "pcm"))
        return count / rate, shorten
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError
        raise UserError(f"{path}: unreadable audio: {' '.join(str(e).split())}") from None
    return info.frames / info.samplerate, False


def find_timit_root(timit_dir: str | Path) -> Path:
    """The directory holding TRAIN/ and TEST/ (any case) under or at `timit_dir`."""
    timit_dir = Path(timit_dir)
    if not timit_dir.is_dir():
        raise UserError(f"{timit_dir}: TIMIT directory does not exist")
    for cand in (timit_dir, timit_dir / "TIMIT", timit_dir / "timit", timit_dir / "data"):
        if cand.is_dir():
            names = {p.name.lower() for p in cand.iterdir() if p.is_dir()}
            if {"train", "test"} <= names:
                return cand
    raise UserError(f"{timit_dir}: no TIMIT layout found (expected [TIMIT/]TRAIN/DR1/<SPK>/<UTT>.WAV and TEST/)")


def _child(d: Path, name: str) -> Path:
    for p in d.iterdir():
        if p.name.lower() == name:
            return p
    raise UserError(f"{d}: no {name.upper()} directory")


def _scan(part_dir: Path) -> dict[str, dict[str, Path]]:
    """{speaker: {utt: .WAV path}} of TRAIN/ or TEST/ (SA sentences included)."""
    spk_utts: dict[str, dict[str, Path]] = {}
    for dr in sorted(p for p in part_dir.iterdir() if p.is_dir() and re.fullmatch(r"dr\d", p.name.lower())):
        for spk_dir in sorted(p for p in dr.iterdir() if p.is_dir()):
            spk = spk_dir.name.lower()
            if not _SPK_RE.match(spk):
                raise UserError(f"{spk_dir}: not a TIMIT speaker directory name (e.g. FCJF0)")
            if spk in spk_utts:
                raise UserError(f"{spk_dir}: speaker {spk} appears twice")
            utts: dict[str, Path] = {}
            for wav in sorted(spk_dir.iterdir()):
                if wav.suffix.lower() != ".wav" or not wav.is_file():
                    continue
                stem = wav.name[: -len(wav.suffix)].lower()
                if stem.endswith(".wav"):  # copies converted to RIFF as SA1.WAV.wav
                    continue
                if not _UTT_RE.match(stem):
                    raise UserError(f"{wav}: not a TIMIT utterance name (SA1, SI943, SX47 ...)")
                utts[stem] = wav
            spk_utts[spk] = utts
    return spk_utts


def _sibling(wav: Path, ext: str) -> Path:
    for cand in (wav.with_suffix(ext.upper()), wav.with_suffix(ext.lower())):
        if cand.is_file():
            return cand
    raise UserError(f"{wav}: no {ext.upper()} transcription next to it")


def _wav_entry(path: Path, wav_format: str, shorten: bool) -> str:
    if wav_format == "sph2pipe":
        return f"sph2pipe -f wav {shlex.quote(str(path))} |"
    if wav_format == "sox":
        return f"sox {shlex.quote(str(path))} -t wav - |"
    if shorten:
        raise UserError(f"{path}: shorten-compressed SPHERE cannot be read directly; use --wav-format sph2pipe")
    return str(path)


# Kaldi egs/timit/s5/local/timit_data_prep.sh: the sclite label header of the stm, and the GLM.
STM_HEADER = (';; LABEL "O" "Overall" "Overall"\n'
              ';; LABEL "F" "Female" "Female speakers"\n'
              ';; LABEL "M" "Male" "Male speakers"\n')
EMPTY_GLM = ";; empty.glm\n  [FAKE]     =>  %HESITATION     / [ ] __ [ ] ;; hesitation token\n"


def stm_text(ref48: dict[str, str], utt2spk: dict[str, str], utt2dur: dict[str, str]) -> str:
    """The stm of a set (module docstring): utterances in C order, gender from the speaker id."""
    lines = [f"{u} 1 {utt2spk[u]} 0.0 {float(utt2dur[u]):f} <O,{'F' if utt2spk[u].startswith('f') else 'M'}> "
             f"{ref48[u]}\n" for u in sorted_c(ref48)]
    return STM_HEADER + "".join(lines)


def _set_done(d: Path) -> bool:
    if not all((d / name).is_file() for name in ("utt2dur", "stm", "glm")):
        return False
    try:
        validate_data_dir(d, no_feats=True)
        return True
    except UserError:
        return False


def prepare_timit(timit_dir: str | Path, data_root: str | Path, *, wav_format: str = "path",
                  phones: int = 48) -> dict[str, Path]:
    """Write `data_root/{train,dev,test}` Kaldi data dirs; sets already complete are skipped.

    Args:
        timit_dir: the corpus (see the module docstring for the layouts accepted).
        data_root: e.g. `data`; the dirs are `data/train`, `data/dev`, `data/test`.
        wav_format: "path" (absolute SPHERE path), "sph2pipe" or "sox" pipes.
        phones: 48 (Kaldi's training set, default), 39 (scoring set) or 60 (TIMIT's own labels).
    Returns {set name: data dir}.
    """
    if wav_format not in WAV_FORMATS:
        raise UserError(f"--wav-format: {wav_format!r} is not one of {', '.join(WAV_FORMATS)}")
    if phones not in (60, 48, 39):
        raise UserError(f"--phones: {phones} is not one of 60, 48, 39")
    data_root = Path(data_root)
    out = {s: data_root / s for s in SETS}
    if all(_set_done(d) for d in out.values()):
        return out
    root = find_timit_root(timit_dir)
    train = _scan(_child(root, "train"))
    test = _scan(_child(root, "test"))
    both = sorted(set(train) & set(test))
    if both:
        raise UserError(f"{root}: speaker {both[0]} is in both TRAIN and TEST")
    members = {"train": train,
               "dev": {s: u for s, u in test.items() if s in DEV_SPEAKERS},
               "test": {s: u for s, u in test.items() if s in CORE_TEST_SPEAKERS}}
    expect = {"train": None, "dev": DEV_SPEAKERS, "test": CORE_TEST_SPEAKERS}
    for name, spk in members.items():
        if not spk:
            raise UserError(f"{root}: no speakers of the {name} set found")
        if expect[name] is not None and len(spk) != len(expect[name]):
            log.warning("%s: %d of the %d standard %s speakers found (incomplete corpus?)",
                        root, len(spk), len(expect[name]), name)
    for name, spk_utts in members.items():
        d = out[name]
        if _set_done(d):
            continue
        wav, text, ref48, utt2spk, utt2dur, spk2gender = {}, {}, {}, {}, {}, {}
        for spk, utts in spk_utts.items():
            for utt, path in utts.items():
                if utt.startswith("sa"):
                    continue  # SA sentences: the same two for everyone, removed as in Kaldi
                path = path.resolve()
                uid = f"{spk}-{utt}"
                phn = _sibling(path, ".phn")
                timit_phones = read_phn(phn)
                mapped = map_phones(timit_phones, phones, str(phn))
                if not mapped:
                    raise UserError(f"{phn}: no phones left after mapping")
                ref48[uid] = " ".join(map_phones(timit_phones, 48, str(phn)))
                dur, shorten = _audio_info(path)
                wav[uid] = _wav_entry(path, wav_format, shorten)
                text[uid] = " ".join(mapped)
                utt2spk[uid] = spk
                utt2dur[uid] = f"{dur:.3f}"
                spk2gender[spk] = spk[0]
        if not wav:
            raise UserError(f"{root}: the {name} set has no SI/SX utterances")
        write_data_dir(d, {"wav.scp": wav, "text": text, "utt2spk": utt2spk, "spk2gender": spk2gender,
                           "utt2dur": utt2dur})
        # After the tables: _set_done needs stm and glm, so an interrupted write is redone.
        atomic_write_text(d / "stm", stm_text(ref48, utt2spk, utt2dur))
        atomic_write_text(d / "glm", EMPTY_GLM)
        log.info("%s: %d speakers, %d utterances", d, len(spk2gender), len(wav))
    return out
