# utils/log.sh: the `log` helper of ESPnet/icefall recipes (espnet/espnet,
# egs2/TEMPLATE/asr1/asr.sh). Source it, then `log "Stage 1: ..."` prints to stderr
#     2026-11-28T10:00:00 (run.sh:42:main) Stage 1: ...
# i.e. an ISO time stamp, the calling file:line:function, and the message.
log() {
  local fname=${BASH_SOURCE[1]##*/}
  printf '%s (%s:%s:%s) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "$fname" "${BASH_LINENO[0]}" \
    "${FUNCNAME[1]:-main}" "$*" >&2
}
