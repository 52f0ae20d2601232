#!/usr/bin/env bash
# The example server with OpenSSLHandler (the system OpenSSL) against the same server with Hummingbird's
# own NIOSSL TLS (HummingbirdTLS / HummingbirdHTTP2, BoringSSL), same machine, same run, release build:
#   - HTTP/1.1 requests/s  (wrk, keep-alive, GET /)
#   - HTTP/2 requests/s    (h2load, GET /, several streams per connection)
#   - memory per connection (server RSS growth with N idle keep-alive TLS connections, python3 ssl)
#   - server CPU time per request (user + system, from /proc), HTTP/1.1 and HTTP/2, one connection, one
#     request at a time: unlike requests/s it does not depend on how the client shares the two cores
# Prints a table with the ratio OpenSSL ÷ NIOSSL (requests/s: higher is better; memory and CPU: lower is
# better).
# Needs: swift, openssl, wrk, h2load (nghttp2-client), python3.
# Settings: DURATION (wrk seconds, 8), H2_REQUESTS (100000), CONNECTIONS (50), IDLE (500), ROUNDS (2),
#           CPU_REQUESTS (20000).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/opt/swift/usr/bin:$PATH"
DURATION=${DURATION:-8}; H2_REQUESTS=${H2_REQUESTS:-100000}; CONNECTIONS=${CONNECTIONS:-50}; IDLE=${IDLE:-500}; ROUNDS=${ROUNDS:-2}
CPU_REQUESTS=${CPU_REQUESTS:-20000}
for tool in openssl wrk h2load python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool is not installed (apt-get install wrk nghttp2-client python3)"; exit 1; }
done

swift build -c release --product hummingbird-openssl >/dev/null
bin="$(swift build -c release --show-bin-path)/hummingbird-openssl"

work=$(mktemp -d); server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# One EC P-256 leaf for 127.0.0.1, signed by a CA made now: the same certificate for both stacks.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
  -days 1 -subj "/CN=bench CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" -out "$work/leaf.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/leaf.ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 1 \
  -extfile "$work/leaf.ext" -out "$work/cert.pem" 2>/dev/null

start_server() {  # $1: openssl | niossl
  "$bin" --tls "$1" --cert "$work/cert.pem" --key "$work/key.pem" --port 0 > "$work/server.out" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    port=$(sed -nE 's/^listening on [^:]+:([0-9]+)$/\1/p' "$work/server.out")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "bench.sh: the $1 server did not start: $(cat "$work/server.out")"; exit 1
}
stop_server() { kill -INT "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status"; }

# Opens $IDLE TLS connections, one keep-alive request on each, holds them, prints the server's RSS growth
# per connection (bytes).
idle_memory() {
  python3 - "$port" "$IDLE" "$server_pid" "$work/ca.pem" <<'PY'
import socket, ssl, sys, time
port, count, pid, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) * 1024
context = ssl.create_default_context(cafile=ca)
def connect():
    s = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data: data += s.recv(4096)
    return s
warm = [connect() for _ in range(20)]          # code paths and pools touched once
for s in warm: s.close()
time.sleep(0.5); before = rss()
held = [connect() for _ in range(count)]
time.sleep(1.0); after = rss()
print((after - before) // count)
for s in held: s.close()
PY
}

# Server CPU time (user + system of all its threads) per request, in microseconds: $CPU_REQUESTS requests
# on one connection, one at a time (h2load; $1: h1 or h2). Fails if any request fails.
cpu_us_per_request() {
  local tick before after finished flag=""
  [ "$1" = h1 ] && flag="--h1"
  tick=$(getconf CLK_TCK)
  before=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
  finished=$(h2load $flag -n "$CPU_REQUESTS" -c 1 -m 1 "https://127.0.0.1:$port/" | awk '/^requests:/ {print $8}')
  after=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
  [ "$finished" = "$CPU_REQUESTS" ] || { echo "bench.sh: only ${finished:-0} of $CPU_REQUESTS $1 requests succeeded" >&2; exit 1; }
  awk -v a="$before" -v b="$after" -v t="$tick" -v n="$CPU_REQUESTS" 'BEGIN {printf "%.1f", (b - a) / t / n * 1e6}'
}

# The key-exchange group a client with this OpenSSL's defaults gets (python3's ssl uses the same defaults):
# equal work needs both stacks to agree on it (3.5 offers X25519MLKEM768 first).
negotiated_group() {
  echo | timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost 2>/dev/null |
    sed -nE 's/^Negotiated TLS1\.3 group: (.*)$/\1/p; s/^Server Temp Key: ([^,]*),.*$/\1/p' | head -1
}

# The better of a round's figure and the best so far (0: none yet).
higher() { awk -v a="$1" -v b="$2" 'BEGIN {print (b > a ? b : a)}'; }
lower() { awk -v a="$1" -v b="$2" 'BEGIN {print (a == 0 || b < a ? b : a)}'; }

declare -A h1 h2 mem group c1 c2
for stack in openssl niossl; do h1[$stack]=0; h2[$stack]=0; mem[$stack]=0; c1[$stack]=0; c2[$stack]=0; done
for round in $(seq 1 "$ROUNDS"); do
  for stack in openssl niossl; do
    start_server "$stack"
    wrk -t 2 -c "$CONNECTIONS" -d 2s "https://127.0.0.1:$port/" >/dev/null  # warm-up
    r=$(wrk -t 2 -c "$CONNECTIONS" -d "${DURATION}s" "https://127.0.0.1:$port/" | awk '/^Requests\/sec:/ {print $2}')
    s=$(h2load -n "$H2_REQUESTS" -c "$CONNECTIONS" -m 10 -t 2 "https://127.0.0.1:$port/" | awk '/^finished in/ {print $4}')
    m=$(idle_memory)
    g=$(negotiated_group); group[$stack]=${g:-?}
    u1=$(cpu_us_per_request h1); u2=$(cpu_us_per_request h2)
    echo "round $round $stack: http/1.1 $r req/s, h2 $s req/s, $m B/connection, CPU $u1 / $u2 us/request, group $g"
    # Best of the rounds (the machine is shared: the best figure is the least disturbed one).
    h1[$stack]=$(higher "${h1[$stack]}" "$r"); h2[$stack]=$(higher "${h2[$stack]}" "$s")
    mem[$stack]=$(lower "${mem[$stack]}" "$m")
    c1[$stack]=$(lower "${c1[$stack]}" "$u1"); c2[$stack]=$(lower "${c2[$stack]}" "$u2")
    stop_server
  done
done

openssl_version=$(openssl version | awk '{print $1, $2}')
echo
echo "Hummingbird 2.28.1, $(nproc) cores, system $openssl_version vs NIOSSL (BoringSSL); best of $ROUNDS rounds"
printf '%-34s %14s %14s %8s\n' "metric" "OpenSSLHandler" "NIOSSL" "ratio"
awk -v a="${h1[openssl]}" -v b="${h1[niossl]}" -v c="$CONNECTIONS" 'BEGIN {printf "%-34s %14.0f %14.0f %7.2fx\n", "HTTP/1.1 req/s (wrk, " c " conn)", a, b, a / b}'
awk -v a="${h2[openssl]}" -v b="${h2[niossl]}" -v c="$CONNECTIONS" 'BEGIN {printf "%-34s %14.0f %14.0f %7.2fx\n", "HTTP/2 req/s (h2load, " c " conn)", a, b, a / b}'
awk -v a="${mem[openssl]}" -v b="${mem[niossl]}" -v n="$IDLE" 'BEGIN {printf "%-34s %14.0f %14.0f %7.2fx\n", "bytes per idle conn (" n ", RSS)", a, b, a / b}'
awk -v a="${c1[openssl]}" -v b="${c1[niossl]}" 'BEGIN {printf "%-34s %14.1f %14.1f %7.2fx\n", "server CPU us/request, HTTP/1.1", a, b, a / b}'
awk -v a="${c2[openssl]}" -v b="${c2[niossl]}" 'BEGIN {printf "%-34s %14.1f %14.1f %7.2fx\n", "server CPU us/request, HTTP/2", a, b, a / b}'
printf '%-34s %14s %14s %8s\n' "key exchange (s_client's defaults)" "${group[openssl]}" "${group[niossl]}" \
  "$([ "${group[openssl]}" = "${group[niossl]}" ] && echo same || echo DIFFER)"
echo "(ratio = OpenSSLHandler / NIOSSL: above 1 is better for req/s, below 1 is better for memory and CPU)"
