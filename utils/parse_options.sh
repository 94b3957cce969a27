# utils/parse_options.sh: command-line option parsing for shell scripts, with the semantics of
# Kaldi's utils/parse_options.sh (kaldi-asr/kaldi, egs/wsj/s5/utils/parse_options.sh).
#
# Source it AFTER declaring every option variable with its default:
#     stage=1; nj=4; use_gpu=false; help_message="Usage: $0 [options] <data>"
#     . utils/parse_options.sh
# Rules:
#   --foo-bar VALUE and --foo_bar VALUE both set $foo_bar (every '-' in the name becomes '_').
#   An option whose variable the script did not declare is an error (exit 1).
#   --name=value is rejected (use "--name value").
#   A variable whose current value is true/false only accepts true/false.
#   --config FILE: every such FILE is sourced (bash var=value lines) BEFORE the other options are
#   applied, so options given on the command line win wherever they appear.
#   --help / -h prints $help_message (or "No help found.") to stderr and exits 0.
#   Parsing stops at the first argument that does not start with "--" (and a "--" argument is
#   consumed); the remaining arguments are left in "$@" as positionals.
# Values are assigned with printf -v (never eval), so spaces, quotes and '$' survive intact.

__po_prog=${0##*/}

# Pass 1: source every --config FILE (left to right) before applying any option.
__po_args=("$@")
__po_i=0
while [ "$__po_i" -lt "${#__po_args[@]}" ]; do
  __po_a=${__po_args[$__po_i]}
  case "$__po_a" in
    --) break ;;
    --config)
      __po_next=$((__po_i + 1))
      if [ "$__po_next" -ge "${#__po_args[@]}" ]; then
        echo "$__po_prog: option --config requires a value" >&2; exit 1
      fi
      __po_cfg=${__po_args[$__po_next]}
      if [ ! -r "$__po_cfg" ]; then
        echo "$__po_prog: missing config file '$__po_cfg' (from --config)" >&2; exit 1
      fi
      # shellcheck disable=SC1090
      . "$__po_cfg" || { echo "$__po_prog: error sourcing config '$__po_cfg'" >&2; exit 1; }
      config=$__po_cfg
      __po_i=$((__po_i + 2)) ;;
    --help|-h) __po_i=$((__po_i + 1)) ;;
    --*) __po_i=$((__po_i + 2)) ;;
    *) break ;;
  esac
done
unset __po_args __po_i __po_a __po_next __po_cfg

# Pass 2: apply the options in order.
while [ "$#" -gt 0 ]; do
  case "$1" in
    --)
      shift; break ;;
    --help|-h)
      if [ -n "${help_message+x}" ]; then printf '%s\n' "$help_message" >&2; else echo "No help found." >&2; fi
      exit 0 ;;
    --*=*)
      echo "$__po_prog: options to scripts must be of the form --name value, got '$1'" >&2
      exit 1 ;;
    --config)
      shift 2 ;;  # already sourced in pass 1
    --*)
      __po_name=${1#--}
      __po_name=${__po_name//-/_}
      if ! [[ "$__po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!__po_name+x}" ]; then
        echo "$__po_prog: invalid option $1" >&2
        exit 1
      fi
      if [ "$#" -lt 2 ]; then
        echo "$__po_prog: option $1 requires a value" >&2
        exit 1
      fi
      __po_old=${!__po_name}
      if [ "$__po_old" = true ] || [ "$__po_old" = false ]; then
        if [ "$2" != true ] && [ "$2" != false ]; then
          echo "$__po_prog: expected \"true\" or \"false\" for $1, got '$2'" >&2
          exit 1
        fi
      fi
      if [ "$__po_name" = cmd ] && [ -z "$2" ]; then
        echo "$__po_prog: empty argument to --cmd option" >&2
        exit 1
      fi
      printf -v "$__po_name" '%s' "$2"
      shift 2 ;;
    *)
      break ;;
  esac
done
unset __po_name __po_old __po_prog
true
