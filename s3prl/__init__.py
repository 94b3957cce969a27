"""S3PRL: Self-Supervised Speech Pre-training and Representation Learning.

The package behind the Kaldi-style recipes in `egs/`: Kaldi data directories and audio
(`s3prl.data`), Kaldi-compatible features (`s3prl.features`), the upstream models Mockingjay,
TERA, Audio ALBERT and APC (`s3prl.upstream`), the one training loop (`s3prl.train`), downstream
tasks (`s3prl.downstream`) and thin command-line verbs (`s3prl.bin`).
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy re-exports (`import s3prl` stays cheap: torch loads only when these are used)."""
    if name in ("load_upstream", "Featurizer"):
        from s3prl.upstream import hub

        return getattr(hub, name)
    raise AttributeError(f"module 's3prl' has no attribute {name!r}")
