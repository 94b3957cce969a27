# Source this file (recipes link it as egs/<dataset>/path.sh): it activates the toolkit's venv,
# puts utils/ on PATH and sets the locale and Python I/O the way Kaldi recipes expect.
# Works from any directory, including paths with spaces.
_s3prl_path_sh="${BASH_SOURCE[0]}"
# Resolve the link egs/<dataset>/path.sh -> ../../path.sh to find the repository root.
while [ -L "$_s3prl_path_sh" ]; do
  _s3prl_dir=$(cd "$(dirname "$_s3prl_path_sh")" && pwd)
  _s3prl_path_sh=$(readlink "$_s3prl_path_sh")
  case "$_s3prl_path_sh" in /*) ;; *) _s3prl_path_sh="$_s3prl_dir/$_s3prl_path_sh" ;; esac
done
S3PRL_ROOT=$(cd "$(dirname "$_s3prl_path_sh")" && pwd)
export S3PRL_ROOT
unset _s3prl_path_sh _s3prl_dir
if [ -f "$S3PRL_ROOT/tools/venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$S3PRL_ROOT/tools/venv/bin/activate"
fi
case ":$PATH:" in
  *":$S3PRL_ROOT/utils:"*) ;;
  *) export PATH="$S3PRL_ROOT/utils:$PATH" ;;
esac
export LC_ALL=C
export PYTHONUNBUFFERED=1
export PYTHONIOENCODING=UTF-8
# One thread per process by default (ESPnet does the same): recipes run nj jobs side by side, and
# on a shared machine OpenMP threads that wait on busy cores make small ops 10-80x slower
# (measured here). Export OMP_NUM_THREADS before sourcing to give one big job more threads.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
