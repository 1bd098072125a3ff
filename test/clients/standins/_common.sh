# Shared by the Pacemaker stand-ins in this directory (sourced, not run).
# State lives under $STANDIN_STATE (the test creates it):
#   calls.log                       one line per call: <command> TAB <arg> TAB <arg> ...
#   attributes/<section>/<name>     attribute values; <section> is crm_config or node-<node name>
#   nodes                           what `crm_node --list` prints ("<id> <name> member" lines)
#   operations/<node>               what `crm_resource --list-operations -N <node>` prints
#   transition                      lines printed after "Transition Summary:" by `crm_simulate -Ls`
set -eu
if [ -z "${STANDIN_STATE:-}" ] || [ ! -d "$STANDIN_STATE" ]; then
  echo "$0: STANDIN_STATE is not set to a directory" >&2
  exit 70
fi

standin_log() {
  # Refuses arguments that would make the log ambiguous (the agent never passes such).
  tab=$(printf '\t')
  nl='
'
  line=$1
  shift
  for a in "$@"; do
    case $a in
      *"$tab"* | *"$nl"*)
        echo "$line: argument with a tab or newline: $a" >&2
        exit 64
        ;;
    esac
    line="$line$tab$a"
  done
  printf '%s\n' "$line" >>"$STANDIN_STATE/calls.log"
}

standin_check_name() {
  case $1 in
    '' | */* | . | ..)
      echo "$0: unusable name '$1'" >&2
      exit 64
      ;;
  esac
}
