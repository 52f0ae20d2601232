#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind) of the C reference and each Swift layer on the
# workloads of `sslcat bench`, in one run: marginal instructions per MiB of bulk transfer, per
# handshake and (the NIO layers) per request/response turn on 1 and on 100 connections. Each workload runs twice, at a small and a larger size, and the difference is divided by
# the difference in work, so that process start, context set-up and the warm-up cancel out. Both ends
# (client and server thread) are counted, in C as in Swift. Unlike wall-clock figures these do not
# move with the machine's load.
#
#   Benchmarks/icount.sh [LAYERS]        LAYERS: comma-separated c,streams,nio,nio-ssl (default: all
#                                        that are built)
#
# Needs release builds: `swift build -c release --product sslcat --product fli-bench-c` (the
# streams layer runs in `sslcat bench-worker`) and, for nio / nio-ssl,
# `swift build -c release --package-path Benchmarks`. Environment: ICOUNT_ONLY=bulk_1k,… measures only
# those workloads; ICOUNT_KEEP=DIR keeps the
# callgrind.out files of the larger runs there (for callgrind_annotate: where the instructions go).
# Under valgrind OpenSSL sees valgrind's CPU (no AVX-512/VAES), so on OpenSSL 3.5 the AES path
# differs from a native run; the comparison between layers stays fair, as all run the same AES.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
command -v valgrind >/dev/null || { echo "icount: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
bin=$(cd "$root" && swift build -c release --show-bin-path 2>/dev/null)
nio=$(cd "$here" && swift build -c release --show-bin-path 2>/dev/null)/fli-bench-nio
cref=$bin/fli-bench-c sslcat=$bin/sslcat
[ -x "$cref" ] && [ -x "$sslcat" ] || { echo "icount: build first: swift build -c release --product sslcat; swift build -c release --product fli-bench-c" >&2; exit 2; }
layers=${1:-c,streams,nio,nio-ssl}
if [ ! -x "$nio" ]; then
  case ",$layers," in *,nio*) echo "icount: $nio is not built (swift build -c release --package-path Benchmarks): nio layers left out" >&2 ;; esac
  layers=$(echo "$layers" | tr , '\n' | grep -v '^nio' | paste -sd, -)
fi

# OpenSSLHandler gives an idle connection's buffers back after 100 ms; valgrind runs the harness 20-90
# times slower, so the delay is stretched to 10 s to keep the releases per request as in a native run.
export NIOBENCH_RELEASE_DELAY_MS=10000

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
keep=${ICOUNT_KEEP:-}
[ -n "$keep" ] && mkdir -p "$keep"
# The same kind of certificate as `sslcat bench`: an EC CA and a localhost server certificate.
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj "/CN=icount CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.pem 2>/dev/null
)
pki=("$work/ca.pem" "$work/server.pem" "$work/server.key")
# Valgrind 3.19 cannot read the DWARF of the benchmarks package's build ("possibly corrupted
# debuginfo"): it runs a copy without debug sections (the symbol table, hence function names, stays).
if [ -x "$nio" ]; then objcopy --strip-debug "$nio" "$work/fli-bench-nio" && nio=$work/fli-bench-nio; fi

# The command line of one workload for one layer.
#   bulk SIZE TOTAL each|batch  |  handshake COUNT 0|1
command_for() {
  local layer=$1 mode=$2 a=$3 b=$4
  case "$layer/$mode" in
    c/bulk) echo "$cref ${pki[*]} bulk $a $b" ;;
    c/handshake) echo "$cref ${pki[*]} handshake $a $b" ;;
    streams/bulk) echo "$sslcat bench-worker --ca ${pki[0]} --cert ${pki[1]} --key ${pki[2]} --bulk $a --total $b $([ "$5" = each ] && echo --flush-each)" ;;
    streams/handshake) echo "$sslcat bench-worker --ca ${pki[0]} --cert ${pki[1]} --key ${pki[2]} --handshakes $a $([ "$b" = 1 ] && echo --resume)" ;;
    nio*/bulk) echo "$nio ${pki[*]} bulk $a $b $5 $layer" ;;
    nio*/handshake) echo "$nio ${pki[*]} handshake $a $b $layer" ;;
    nio*/requests) echo "$nio ${pki[*]} requests $a $b $layer" ;;
  esac
}

# Instructions of one run (callgrind's "Collected" total); keeps the output file when asked.
instructions() {
  local name=$1; shift
  local out="$work/callgrind.out.$name"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$work/stdout" 2>"$work/stderr" \
    || { echo "icount: $* failed:" >&2; tail -5 "$work/stderr" >&2; return 1; }
  [ -n "$keep" ] && cp "$out" "$keep/"
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/stderr" | tail -1
}

# Marginal instructions per unit: (I(large) - I(small)) / (units(large) - units(small)).
marginal() { # NAME UNITS_SMALL UNITS_LARGE CMD_SMALL CMD_LARGE
  local small large
  small=$(instructions "$1.small" $4) && large=$(instructions "$1" $5) && [ -n "$small" ] && [ -n "$large" ] || return 1
  echo $(( (large - small) / ($3 - $2) ))
}

mib=$((1 << 20))
status=0
printf '%-20s %-8s %16s  %-14s %10s\n' name layer instructions unit ratio_to_c
declare -A cvalue
for spec in "bulk_16k 16384 4 12 batch MiB" "bulk_1k 1024 2 6 each MiB" "bulk_1k_coalesced 1024 2 6 batch MiB" \
            "handshake_full 0 20 60 0 handshake" "handshake_resumed 1 20 60 1 handshake" \
            "requests_1conn 1 1000 3000 - request" "requests_100conn 100 100 200 - request"; do
  read -r name size small large flush unit <<<"$spec"
  [ -n "${ICOUNT_ONLY:-}" ] && [[ ",$ICOUNT_ONLY," != *",$name,"* ]] && continue
  order=$(echo "$layers" | tr , ' ')
  # No C reference for requests: nio-ssl goes first and is the base of the ratio there.
  [ "$unit" = request ] && order=$(echo "$order" | tr ' ' '\n' | sort -r | tr '\n' ' ')
  for layer in $order; do
    # swift-nio-ssl's client keeps no session to resume; C has no coalescing of its own (its bulk_1k).
    [ "$layer/$name" = nio-ssl/handshake_resumed ] && continue
    [ "$layer/$name" = c/bulk_1k_coalesced ] && continue
    # Request/response turns (an HTTP/1.1 keep-alive exchange, SIZE connections at once): the NIO layers only.
    [ "$unit" = request ] && [[ "$layer" != nio* ]] && continue
    failed=0
    if [ "$unit" = request ]; then
      v=$(marginal "$layer.$name" $((small * size)) $((large * size)) "$(command_for "$layer" requests "$small" "$size")" \
                                                                    "$(command_for "$layer" requests "$large" "$size")") || failed=1
    elif [ "$unit" = MiB ]; then
      v=$(marginal "$layer.$name" "$small" "$large" "$(command_for "$layer" bulk "$size" $((small * mib)) "$flush")" \
                                                  "$(command_for "$layer" bulk "$size" $((large * mib)) "$flush")") || failed=1
    else
      v=$(marginal "$layer.$name" "$small" "$large" "$(command_for "$layer" handshake "$small" "$flush")" \
                                                  "$(command_for "$layer" handshake "$large" "$flush")") || failed=1
    fi
    if [ "$failed" = 1 ]; then printf '%-20s %-8s %16s  %-14s %10s\n' "$name" "$layer" failed "instr/$unit" -; status=1; continue; fi
    base=${cvalue[$name]:-${cvalue[${name%_coalesced}]:-}}
    [ "$layer" = c ] || { [ "$unit" = request ] && [ "$layer" = nio-ssl ]; } && { cvalue[$name]=$v; base=$v; }
    ratio=$([ -n "$base" ] && awk -v a="$v" -v b="$base" 'BEGIN { printf "%.3f", a / b }' || echo -)
    printf '%-20s %-8s %16d  %-14s %10s\n' "$name" "$layer" "$v" "instr/$unit" "$ratio"
  done
done
echo "(marginal callgrind instructions, both ends counted; lower is better; ratio_to_c < 1 means fewer than C;"
echo " requests_*: instructions per request/response turn, ratio to nio-ssl)"
exit $status
