#!/usr/bin/env bash
# Builds the DocC documentation of every public module with the toolchain's docc and fails on any
# warning (an unresolved symbol link, a documented parameter that does not exist …).
#   .ci/docs.sh [OUTPUT_DIR]        (default /tmp/swift-openssl-fli-docs)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/swift-openssl-fli-docs}
scratch=${DOCS_SCRATCH:-.build}
swift package --scratch-path "$scratch" dump-symbol-graph --minimum-access-level public --emit-extension-block-symbols >/dev/null
graphs="$scratch/$(uname -m)-unknown-linux-gnu/symbolgraph"
status=0
for module in OpenSSLFLI OpenSSLCrypto OpenSSL OpenSSLTLS OpenSSLStreams OpenSSLSeeds OpenSSLNIO; do
  dir=$(mktemp -d)
  cp "$graphs/$module.symbols.json" "$dir/"
  cp "$graphs/$module"@*.symbols.json "$dir/" 2>/dev/null || true
  log="$out/$module.log"; mkdir -p "$out"
  if docc convert "Sources/$module/$module.docc" --additional-symbol-graph-dir "$dir" \
       --fallback-display-name "$module" --fallback-bundle-identifier "org.swift-openssl-fli.$module" \
       --output-path "$out/$module.doccarchive" --warnings-as-errors >"$log" 2>&1; then
    echo "docs: $module ok ($(grep -c 'warning:' "$log" || true) warnings)"
  else
    echo "docs: $module FAILED:"; grep -E "warning:|error:" "$log" | head -40; status=1
  fi
  rm -rf "$dir"
done
exit $status
