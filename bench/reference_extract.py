"""Reference side of the extraction benchmark: s3prl 0.4.x (`s3prl.hub.tera_local`).

Runs INSIDE tools/bench-venv (tools/install_bench_reference.sh), never in the toolkit's venv, so
`import s3prl` here is the PyPI reference package. It installs the torchaudio compatibility shims
of docs/dependencies.md first (CUDA-linked torchaudio 2.11 wheel on a torch whose extension
may not load; removed `set_audio_backend` and `sox_effects`), then times
`tera_local(ckpt)(wavs)` on the same waveforms, batches, threads and device as our side.

Usage: python bench/reference_extract.py --ckpt C --wavs W.npz --batches B.json --threads N
           --device cpu|cuda --out R.json --states S.npz
W.npz holds w0..w{n-1}; B.json {"1": [[i, ...], ...], "8": [...]} (the batches, indices into W);
the valid frames of every hidden state of the utterances in --check-utts are saved to S.npz as
"b{bs}_u{i}_l{k}".
"""
import argparse
import json
import sys
import time
import types


def import_torchaudio():
    """The shim of docs/dependencies.md: fall back to torchaudio's pure-Python parts when its
    extension cannot load."""
    try:
        import torchaudio
        return torchaudio
    except OSError:
        for k in [k for k in sys.modules if k == "torchaudio" or k.startswith("torchaudio.")]:
            del sys.modules[k]

    def _unavailable(*a, **k):
        raise RuntimeError("torchaudio native extension unavailable")
    stub = types.ModuleType("torchaudio._extension")
    stub._IS_TORCHAUDIO_EXT_AVAILABLE = False
    stub._IS_ALIGN_AVAILABLE = False
    stub.fail_if_no_align = lambda fn: _unavailable
    stub._load_lib = lambda lib: False
    stub._check_cuda_version = lambda: None
    sys.modules["torchaudio._extension"] = stub
    import torchaudio
    return torchaudio


def install_shims():
    torchaudio = import_torchaudio()
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda *a, **k: None
    if "torchaudio.sox_effects" not in sys.modules:
        m = types.ModuleType("torchaudio.sox_effects")

        def _unavailable(*a, **k):
            raise RuntimeError("torchaudio.sox_effects was removed in torchaudio 2.9")
        m.apply_effects_tensor = m.apply_effects_file = _unavailable
        sys.modules["torchaudio.sox_effects"] = m
        torchaudio.sox_effects = m


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--wavs", required=True)
    p.add_argument("--batches", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--states", required=True)
    p.add_argument("--check-utts", default="")
    args = p.parse_args()

    install_shims()
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    import s3prl
    import s3prl.hub as hub
    import_s = time.perf_counter() - t0
    model = hub.tera_local(ckpt=args.ckpt).to(args.device)
    model.eval()
    data = np.load(args.wavs)
    wavs = [torch.from_numpy(data[f"w{i}"]).to(args.device) for i in range(len(data.files))]
    batches = json.loads(open(args.batches).read())
    check = {int(x) for x in args.check_utts.split(",") if x}
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    result = {"s3prl_version": getattr(s3prl, "__version__", "?"), "torch": torch.__version__,
              "import_seconds": import_s, "seconds": {}}
    states = {}
    with torch.no_grad():
        model([wavs[0]])  # warm-up (allocator, kernels)
        for bs, blist in batches.items():
            sync()
            t0 = time.perf_counter()
            outs = []
            for b in blist:
                out = model([wavs[i] for i in b])
                outs.append((b, out))
            sync()
            result["seconds"][bs] = time.perf_counter() - t0
            for b, out in outs:
                hs = out["hidden_states"]
                for j, i in enumerate(b):
                    if i not in check:
                        continue
                    n = 1 + (len(wavs[i]) - 400) // 160
                    for k, h in enumerate(hs):
                        states[f"b{bs}_u{i}_l{k}"] = h[j, :n].float().cpu().numpy()
            del outs
    np.savez(args.states, **states)
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
