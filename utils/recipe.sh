# utils/recipe.sh: the start every egs/*/run.sh shares, sourced with the script's arguments after
# its configuration section and help message:
#
#     caller_pwd=$PWD
#     cd "$(dirname "$0")"
#     . utils/recipe.sh "$@"
#
# It sources path.sh and cmd.sh, parses the --options (Kaldi's utils/parse_options.sh: every
# option must be a variable of the configuration section), refuses a leftover argument with the
# help message, and defines `log` (utils/log.sh) and `abspath PATH` (PATH as given on the command
# line, made absolute against the caller's directory; "" stays "").
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then
  echo "$0: unexpected argument: $1" >&2
  echo "$help_message" >&2
  exit 1
fi
. utils/log.sh
abspath() { case "$1" in /*|"") echo "$1" ;; *) echo "$caller_pwd/$1" ;; esac; }
