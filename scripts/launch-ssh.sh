#!/usr/bin/env bash
# launch-ssh.sh: a distributed run over several hosts: the coordinator on this host, one
# lockstep-worker per chip on the hosts of a list, started over ssh. It plans (unless --plan is
# given) and hands the run to `lockstep deploy`, which maps chips to hosts, checks hosts, routes
# and links before any weights move, ships the shards, prints the tokens and stops every worker.
set -uo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/launch-ssh.sh (--hosts HOSTS.yaml | --host [USER@]ADDRESS[:SSHPORT] ...)
           --model CONFIG (--seed S | --weights F) (--prompt 1,2,3 | --prompts FILE)
           [--plan PLAN | --tp N --pp N] [--topology T] [--max-new N] [--cores N]
           [--ssh CMD] [--advertise ADDR] [--bin DIR] [--dry-run] [--json]

  --hosts FILE     a hosts file (topology/HOSTS.md): names, addresses, cores, ssh user/port
  --host SPEC      instead: one host per flag, [USER@]ADDRESS[:SSHPORT], each with --cores cores;
                   ADDRESS must be the name the host reports (hostname): the pre-flight check
                   compares them (use a hosts file with `hostname:` for IP addresses)
  --cores N        cores per --host (default 8)
  --plan PLAN      a plan (lockstep plan -o); else planned here for --topology (default node)
                   with --tp/--pp
  --ssh CMD        how to reach a host (default: ssh); run as CMD -p PORT [USER@]ADDRESS
                   lockstep-worker ...  Tests pass a fake ssh that runs the command locally.
  --advertise ADDR the address the workers reach this host's coordinator at (default: hostname)
  --remote-worker P  lockstep-worker's path on the hosts (default: this build's path)
  --bin DIR        folder holding lockstep and lockstep-worker (default: $LOCKSTEP_BIN, else
                   build/cli next to this script)
  --dry-run        print the chip -> host mapping and stop
  --json           one JSON object (mapping, pre-flight checks, timings, tokens)

Every host needs the same lockstep build at the same path (or --remote-worker), and its
workers must reach this host (--advertise) and each other's link ports (hosts file
tcp_base_port; default derived from this process).

example:
  scripts/launch-ssh.sh --host 10.0.0.2 --host 10.0.0.3 --cores 8 \
      --model examples/models/tiny-llama --seed 1 --prompt 1,2,3 --tp 2 --pp 2
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${LOCKSTEP_BIN:-$here/../build/cli}
hosts_file="" plan="" topology=node ssh=ssh cores=8 advertise="" remote_worker=""
host_specs=() plan_args=() deploy_args=() global=()
need() { [[ $2 -ge 2 ]] || { echo "launch-ssh.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --hosts) need "$1" $#; hosts_file=$2; shift 2 ;;
    --host) need "$1" $#; host_specs+=("$2"); shift 2 ;;
    --cores) need "$1" $#; cores=$2; shift 2 ;;
    --plan) need "$1" $#; plan=$2; shift 2 ;;
    --topology) need "$1" $#; topology=$2; shift 2 ;;
    --tp|--pp) need "$1" $#; plan_args+=("$1" "$2"); shift 2 ;;
    --ssh) need "$1" $#; ssh=$2; shift 2 ;;
    --advertise) need "$1" $#; advertise=$2; shift 2 ;;
    --remote-worker) need "$1" $#; remote_worker=$2; shift 2 ;;
    --bin) need "$1" $#; bin=$2; shift 2 ;;
    --json) global+=(--json); shift ;;
    --model) need "$1" $#; model=$2; plan_args+=(--model "$2"); deploy_args+=(--model "$2"); shift 2 ;;
    --dry-run) deploy_args+=("$1"); shift ;;
    --seed|--weights|--prompt|--prompts|--max-new|--slots|--step-timeout-ms|--heartbeat-timeout-ms|--register-timeout-ms|--link-timeout-ms)
      need "$1" $#; deploy_args+=("$1" "$2"); shift 2 ;;
    *) echo "launch-ssh.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z $hosts_file && ${#host_specs[@]} -eq 0 ]]; then
  echo "launch-ssh.sh: give --hosts FILE or at least one --host (see --help)" >&2; exit 2
fi
[[ -n ${model:-} ]] || { echo "launch-ssh.sh: missing --model CONFIG (see --help)" >&2; exit 2; }
[[ -x $bin/lockstep ]] || { echo "launch-ssh.sh: $bin/lockstep not found (or --bin DIR)" >&2; exit 2; }

work=$(mktemp -d /tmp/lockstep-ssh-XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z $hosts_file ]]; then
  hosts_file=$work/hosts.yaml
  echo "hosts:" >"$hosts_file"
  for spec in "${host_specs[@]}"; do
    user="" port=22 addr=$spec
    if [[ $addr == *@* ]]; then user=${addr%%@*}; addr=${addr#*@}; fi
    if [[ $addr == *:* ]]; then port=${addr##*:}; addr=${addr%:*}; fi
    {
      echo "  - name: \"$addr\""
      echo "    address: \"$addr\""
      echo "    cores: $cores"
      echo "    ssh_port: $port"
      [[ -n $user ]] && echo "    ssh_user: \"$user\""
    } >>"$hosts_file"
  done
fi
if [[ -z $plan ]]; then
  plan=$work/plan.bin
  "$bin/lockstep" plan "${plan_args[@]}" --topology "$topology" -o "$plan" >/dev/null || exit $?
fi
extra=(--ssh-command "$ssh")
[[ -n $advertise ]] && extra+=(--advertise "$advertise")
[[ -n $remote_worker ]] && extra+=(--remote-worker "$remote_worker")
# lockstep deploy stops every worker it started, on success and on failure.
"$bin/lockstep" "${global[@]}" deploy --plan "$plan" --hosts "$hosts_file" "${extra[@]}" \
  "${deploy_args[@]}"
