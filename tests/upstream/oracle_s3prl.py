"""The s3prl 0.4.18 side of tests/upstream/test_s3prl_oracle.py (a test oracle, not part of the toolkit).

Runs INSIDE tools/bench-venv (tools/install_bench_reference.sh), where `import s3prl` is the PyPI
package, with the torchaudio shims of bench/reference_extract.py. One process does every job of a
JSON file, so the ~10 s import is paid once:

* ``{"pretrain": UPSTREAM, "upstream_config": {...}, "feats": [F.npy, ...], "steps": N, "expdir": D,
  "optimizer": {...}}``: s3prl's own pre-training runner (`s3prl/pretrain/runner.py`
  `Runner.train`, the loop and checkpoint writer of `run_pretrain.py`) for UPSTREAM (mockingjay,
  tera, audio_albert, apc) on pre-extracted feature files, writing ``D/states-N.ckpt``. The one
  thing replaced is the reading of a LibriSpeech csv file list (pandas, not installed there): the
  dataset gets its file list directly. tensorboardX (not installed) becomes a no-op writer.
* ``{"hub": ENTRY, "ckpt": C, "key": K}``: ``s3prl.hub.<ENTRY>(ckpt=C)`` in eval mode on every
  waveform of --wavs one at a time; every hidden state is saved to --out as ``K_u<i>_l<k>``.
  (argparse.Namespace is admitted to torch's weights_only loader: `apc_local` loads with it and
  would otherwise refuse the `Args` s3prl's own runner writes.)

Usage: python oracle_s3prl.py --jobs J.json --wavs W.npz --out S.npz
"""
import argparse
import json
import os
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _stub_modules():
    """Modules s3prl's pretraining code imports but never needs here."""
    from importlib.machinery import ModuleSpec

    def module(name):
        m = types.ModuleType(name)
        m.__spec__ = ModuleSpec(name, None)  # torch._dynamo's find_spec scan expects one
        return m

    tb = module("tensorboardX")

    class SummaryWriter:
        def __init__(self, *a, **k):
            pass

        def __getattr__(self, name):
            return lambda *a, **k: None

    tb.SummaryWriter = SummaryWriter
    sys.modules.setdefault("tensorboardX", tb)
    sys.modules.setdefault("pandas", module("pandas"))
    audio = module("utility.audio")
    audio.plot_spectrogram_to_numpy = lambda spec: None
    sys.modules["utility.audio"] = audio


def pretrain(job):
    import s3prl
    import torch

    # run_pretrain.py runs from the package directory: its modules import each other as top-level
    # `pretrain.*`, `upstream.*`, `optimizers` (which is why its pickles name `optimizers.X`).
    sys.path.insert(0, os.path.dirname(s3prl.__file__))
    _stub_modules()
    import pretrain.bucket_dataset as bucket
    from pretrain.runner import Runner

    feats = job["feats"]

    def file_list_init(self, extracter, task_config, bucket_size, file_path, sets, max_timestep=0,
                       libri_root=None, **kwargs):
        torch.utils.data.Dataset.__init__(self)
        self.extracter, self.task_config, self.libri_root = extracter, task_config, libri_root
        self.sample_length = task_config.get("sequence_length", 0)
        self.root = file_path
        self.X = [feats[i:i + bucket_size] for i in range(0, len(feats), bucket_size)]

    bucket.FeatDataset.__init__ = file_list_init
    torch.manual_seed(0)
    steps = int(job["steps"])
    config = {"runner": {"total_steps": steps, "gradient_clipping": 5.0, "gradient_accumulate_steps": 1,
                         "log_step": steps - 1, "save_step": steps - 1, "max_keep": 2, "n_epochs": 0},
              "optimizer": job["optimizer"],
              "pretrain_expert": {"datarc": {"num_workers": 0, "train_batch_size": 2, "max_timestep": 0,
                                             "file_path": os.path.dirname(feats[0]), "sets": ["train"]}}}
    args = argparse.Namespace(expdir=job["expdir"], init_ckpt=None, upstream=job["pretrain"],
                              upstream_config=job["upstream_config"], device="cpu", multi_gpu=False,
                              config="oracle", seed=0)
    os.makedirs(job["expdir"], exist_ok=True)
    Runner(args, config).train()


def hub(job, wavs, states):
    import torch

    import s3prl.hub as s3hub

    model = getattr(s3hub, job["hub"])(ckpt=job["ckpt"])
    model.eval()
    with torch.no_grad():
        for i, w in enumerate(wavs):
            hs = model([w])["hidden_states"]
            for k, h in enumerate(hs):
                states[f"{job['key']}_u{i}_l{k}"] = h[0].float().numpy()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", required=True)
    p.add_argument("--wavs", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    sys.path.insert(0, str(REPO / "bench"))
    from reference_extract import install_shims

    install_shims()
    import numpy as np
    import torch

    torch.set_num_threads(1)
    # s3prl 0.4.18's apc expert calls torch.load with torch's default weights_only=True (torch >= 2.6)
    # and so refuses the `Args` namespace its own runner saves; admit that plain attribute bag.
    torch.serialization.add_safe_globals([argparse.Namespace])
    data = np.load(args.wavs)
    wavs = [torch.from_numpy(data[f"w{i}"]) for i in range(len(data.files))]
    states = {}
    for job in json.loads(Path(args.jobs).read_text()):
        if "pretrain" in job:
            pretrain(job)
        else:
            hub(job, wavs, states)
    np.savez(args.out, **states)


if __name__ == "__main__":
    main()
