"""ark/scp writing, read back by kaldiio and by the independent reader tests/kaldi_binary.py."""
import numpy as np
import pytest
import kaldiio

from s3prl.data.ark import ArkWriter, iter_scp, read_scp_matrix, read_scp_stats, write_cmvn_ark
from s3prl.errors import UserError
from tests.kaldi_binary import read_ark, read_scp, read_scp_entry


def _mats():
    rng = np.random.default_rng(0)
    return {"spkA-u1": rng.standard_normal((20, 6)).astype(np.float32),
            "spkA-u2": rng.standard_normal((3, 6)).astype(np.float32),
            "spkB-u1": rng.standard_normal((11, 6)).astype(np.float32) * 10}


def test_fm_exact(tmp_path):
    m = _mats()
    with ArkWriter(tmp_path / "f.ark", tmp_path / "f.scp") as w:
        for k, v in m.items():
            w.write(k, v)
    lines = (tmp_path / "f.scp").read_text().splitlines()
    assert lines[0] == f"spkA-u1 {tmp_path}/f.ark:8"          # offset points at \0B
    raw = (tmp_path / "f.ark").read_bytes()
    assert raw[:19] == b"spkA-u1 \0BFM \x04\x14\x00\x00\x00\x04"
    assert len(raw) == sum(len(k) + 1 + 2 + 3 + 10 + 4 * v.size for k, v in m.items())
    ours, kio = read_scp(tmp_path / "f.scp"), kaldiio.load_scp(str(tmp_path / "f.scp"))
    for k, v in m.items():
        assert np.array_equal(ours[k], v) and np.array_equal(kio[k], v)
        r = read_scp_matrix(f"{tmp_path}/f.ark:{lines[list(m).index(k)].rsplit(':', 1)[1]}")
        assert r.flags.writeable and np.array_equal(r, v)
    assert list(read_ark(tmp_path / "f.ark")) == list(m)
    assert [k for k, _ in iter_scp(tmp_path / "f.scp")] == list(m)


@pytest.mark.parametrize("method,atol", [(1, 0.05), (2, 0.05), (3, 1e-3)])
def test_compressed(tmp_path, method, atol):
    m = _mats()
    with ArkWriter(tmp_path / "c.ark", tmp_path / "c.scp", compression=method) as w:
        for k, v in m.items():
            w[k] = v
    ours, kio = read_scp(tmp_path / "c.scp"), kaldiio.load_scp(str(tmp_path / "c.scp"))
    tokens = set()
    for k, v in m.items():
        assert np.allclose(ours[k], kio[k], atol=1e-5)
        scale = np.abs(v).max()
        assert np.abs(ours[k] - v).max() < atol * scale
    raw = (tmp_path / "c.ark").read_bytes()
    tokens = {t for t in (b"\0BCM ", b"\0BCM2 ") if t in raw}
    assert tokens == ({b"\0BCM ", b"\0BCM2 "} if method == 1 else {b"\0BCM "} if method == 2 else {b"\0BCM2 "})


def test_cmvn_ark_is_double(tmp_path):
    s = {"spkB": np.array([[1.5, 2.0, 3.0], [4.0, 5.0, 0.0]]), "spkA": np.array([[0.1, 0.2, 1.0], [1, 1, 0]])}
    write_cmvn_ark(tmp_path / "cmvn.ark", tmp_path / "cmvn.scp", s)
    assert [l.split()[0] for l in (tmp_path / "cmvn.scp").read_text().splitlines()] == ["spkA", "spkB"]
    back = read_scp(tmp_path / "cmvn.scp")
    assert back["spkB"].dtype == np.float64 and np.array_equal(back["spkA"], s["spkA"])
    assert b"\0BDM " in (tmp_path / "cmvn.ark").read_bytes()
    entry = (tmp_path / "cmvn.scp").read_text().splitlines()[0].split()[1]
    assert read_scp_stats(entry)[0, 0] == 0.1 and read_scp_entry(entry)[0, 0] == 0.1


def test_nan_is_refused_and_nothing_written(tmp_path):
    bad = np.ones((3, 2), dtype=np.float32)
    bad[1, 1] = np.nan
    with pytest.raises(UserError, match="utterance u2: matrix contains NaN"):
        with ArkWriter(tmp_path / "n.ark", tmp_path / "n.scp") as w:
            w.write("u1", np.ones((2, 2)))
            w.write("u2", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="invalid Kaldi key"):
        with ArkWriter(tmp_path / "n.ark", tmp_path / "n.scp") as w:
            w.write("a b", np.ones((2, 2)))
    with pytest.raises(UserError, match="utterance x: cannot read matrix"):
        read_scp_matrix(f"{tmp_path}/none.ark:8", key="x")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_write_is_byte_identical_to_kaldiio(tmp_path, dtype):
    rng = np.random.default_rng(1)
    m = {"a": rng.standard_normal((7, 5)).astype(dtype), "b": np.zeros((0, 5), dtype=dtype),
         "c": rng.standard_normal((1, 5)).astype(">f4" if dtype == np.float32 else ">f8"),  # big-endian in
         "d": np.asfortranarray(rng.standard_normal((4, 3)))}
    with ArkWriter(tmp_path / "o.ark", tmp_path / "o.scp", dtype=dtype) as w:
        for k, v in m.items():
            w.write(k, v)
    with kaldiio.WriteHelper(f"ark:{tmp_path / 'k.ark'}") as kw:
        for k, v in m.items():
            kw(k, np.ascontiguousarray(v, dtype=dtype))
    assert (tmp_path / "o.ark").read_bytes() == (tmp_path / "k.ark").read_bytes()
    back = read_scp(tmp_path / "o.scp")
    assert np.array_equal(back["c"], m["c"]) and back["b"].shape == (0, 5)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_inf_and_nan_anywhere_are_refused(tmp_path, value):
    bad = np.zeros((4, 3), dtype=np.float32)
    bad[3, 2] = value
    with pytest.raises(UserError, match="utterance u: matrix contains NaN or Inf"):
        with ArkWriter(tmp_path / "n.ark", tmp_path / "n.scp") as w:
            w.write("u", bad)
    assert list(tmp_path.iterdir()) == []
