#!/usr/bin/env bash
# Builds the libFuzzer targets, replays the inputs that once crashed them (Fuzz/regressions/TARGET-*), and
# runs each for SECONDS (default 60), with a corpus per target under Fuzz/corpus/ (seeded at the first
# run). Crashes are written to Fuzz/crashes/ (copy one to Fuzz/regressions/ once fixed); exit non-zero on any.
#   Fuzz/run.sh [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzPEM FuzzTLSServer FuzzTLSClient FuzzLispNames)
export PATH="/opt/swift/usr/bin:$PATH"
# Swift's own crash backtracer would catch the signal first and libFuzzer would write no artifact.
export SWIFT_BACKTRACE=enable=no
swift build -c debug --sanitize=fuzzer --scratch-path .build-fuzz 2>&1 | tail -n 3
bin=$(swift build -c debug --sanitize=fuzzer --scratch-path .build-fuzz --show-bin-path)
mkdir -p crashes
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  if [ -z "$(ls -A "corpus/$t")" ]; then
    # Seeds: a PEM certificate and garbage for the readers; TLS record headers for the engines.
    printf -- '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' > "corpus/$t/pem"
    printf '\x00\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00' > "corpus/$t/record"
    # For the Lisp-name resolver: a name, a symbol, a name with an explicit C name, a spec line.
    printf '\x00ssl-ctx-use-rsaprivatekey-file' > "corpus/$t/name"
    printf '\x00COMM::SSL-CTX-NEW' > "corpus/$t/symbol"
    printf '\x01ssl-new\nSSL_new' > "corpus/$t/explicit"
    printf '\x02lisp ssl-ctx-sess-get-cache-mode = SSL_CTX_get_session_cache_mode | renamed' > "corpus/$t/line"
  fi
  # Every input that once crashed a target is replayed first (libFuzzer runs the files it is given).
  regressions=(regressions/"$t"-*)
  if [ -e "${regressions[0]}" ]; then
    if "$bin/$t" -artifact_prefix="crashes/$t-regression-" "${regressions[@]}" > "crashes/$t-regressions.log" 2>&1; then
      echo "fuzz: $t replayed ${#regressions[@]} regression input(s)"
    else
      echo "fuzz: $t FAILED on a regression input"; tail -n 30 "crashes/$t-regressions.log"; status=1
    fi
  fi
  echo "fuzz: $t for ${seconds}s"
  if ! "$bin/$t" "corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -artifact_prefix="crashes/$t-" \
        -print_final_stats=1 2> "crashes/$t.log"; then
    echo "fuzz: $t FAILED (see Fuzz/crashes/)"; tail -n 30 "crashes/$t.log"; status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "crashes/$t.log" | sed "s/^/fuzz: $t /" || true
done
exit $status
