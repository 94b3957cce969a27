"""User-facing errors and the CLI entry wrapper.

Bad input must give a one-line error naming the file, line, key or option at fault and a
non-zero exit. Code raises `UserError` (or `ConfigError`, a malformed config) with such a message;
`cli_main` prints it as ``<prog>: error: <message>`` and exits 1, without a traceback.
"""
from __future__ import annotations

import errno
import os
import sys
from typing import Callable


_ENV_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
               errno.EISDIR, errno.ENAMETOOLONG}


class UserError(Exception):
    """An error caused by the user's input (files, options, configs), reported in one line."""


class ConfigError(ValueError):
    """A config file or override is malformed; the message names the file and the key at fault.

    Raised by `s3prl.config` (which re-exports it)."""


def cli_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run `main(argv)`; turn UserError / ConfigError / KeyboardInterrupt into one-line errors."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "s3prl"
    if prog in ("__main__.py", "-m", "-c"):
        prog = "s3prl"
    try:
        rc = main(argv)
    except (UserError, ConfigError) as e:
        msg = " ".join(str(e).split("\n"))
        print(f"{prog}: error: {msg}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        # The environment, not the code: disk full, file too large (RLIMIT_FSIZE), read-only or
        # not a directory, permission. One line naming the file; the atomic writers already
        # removed their temporary files on the way out.
        if e.errno not in _ENV_ERRNOS:
            raise
        where = e.filename if e.filename is not None else "output"
        print(f"{prog}: error: {where}: {e.strerror or e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc or 0)
