#!/usr/bin/env bash
# utils/with_lock.sh: run a command while holding an exclusive lock on a directory, refusing at once
# (exit 1, one line naming the holder) when another run holds it, before the command or its job
# runner has touched anything there (run.pl truncates its log when it starts).
#
# Usage: utils/with_lock.sh <dir> <command> [args...]
#   e.g. utils/with_lock.sh exp/downstream/phone_linear_fbank run.pl exp/.../log/train.log python -m ...
# The lock is <dir>/log/.run.lock (flock; the kernel drops it when the holder dies, so a killed run
# leaves no stale lock). A verb started directly that holds <dir>/.lock also makes this refuse.
# The command runs without the lock's file descriptor; its exit status is this script's.
# (The command-line face of s3prl_with_lock in utils/lib.sh.)
set -euo pipefail
prog=${0##*/}
if [ $# -lt 2 ]; then
  echo "Usage: $prog <dir> <command> [args...]" >&2
  exit 1
fi
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
s3prl_with_lock "$@"    # under set -e its status is this script's
