# utils/parallel.sh: run recipe steps side by side (sourced by run.sh, like utils/log.sh).
#   bg_run CMD ARGS...   start CMD in the background once fewer than $max_parallel steps run
#   bg_wait              wait for all of them; returns 1 (naming the failed steps) if any failed
# Each step should write its own log (run.pl does); a failed step does not stop the others.
_bg_failures=$(mktemp "${TMPDIR:-/tmp}/s3prl-bg.XXXXXX")
trap 'rm -f "$_bg_failures"' EXIT

bg_run() {
  while [ "$(jobs -pr | wc -l)" -ge "${max_parallel:-1}" ]; do
    sleep 1
  done
  (
    set +e
    "$@"
    rc=$?
    if [ "$rc" -ne 0 ]; then
      printf '%s (exit %s)\n' "$*" "$rc" >> "$_bg_failures"
    fi
    exit 0
  ) &
}

bg_wait() {
  wait
  if [ -s "$_bg_failures" ]; then
    echo "bg_wait: $(wc -l < "$_bg_failures") parallel step(s) failed:" >&2
    cat "$_bg_failures" >&2
    : > "$_bg_failures"
    return 1
  fi
  return 0
}
