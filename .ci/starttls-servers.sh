#!/usr/bin/env bash
# Installs the real servers that Tests/SSLCatTests/StartTLSServerTests.swift runs `sslcat connect
# --starttls P` against: Exim (SMTP), Dovecot (IMAP, POP3), vsftpd (FTP AUTH TLS), Prosody (XMPP), slapd
# (LDAP StartTLS) and PostgreSQL (SSLRequest). The tests start each server themselves, as a child with its
# own configuration in a temporary directory on 127.0.0.1 and a free port, so no daemon may stay running
# from the package install: a policy-rc.d keeps the maintainer scripts from starting them, and whatever
# runs anyway is stopped afterwards. Idempotent: installs only what is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

need=(exim4-daemon-light dovecot-imapd dovecot-pop3d vsftpd prosody slapd postgresql)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # 101: "action not allowed" (invoke-rc.d), so no service starts during the install.
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  start=$(date +%s)
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "${missing[@]}"
  echo "starttls-servers: installed ${missing[*]} in $(( $(date +%s) - start )) s"
  if [ "$made_policy" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
# Stop any daemon the packages started anyway (a machine with systemd, or an earlier install), so the
# well-known ports are free and the tests' own servers are the only ones.
for service in exim4 dovecot vsftpd prosody slapd postgresql; do
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $SUDO systemctl stop "$service" >/dev/null 2>&1 || true
    $SUDO systemctl disable "$service" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$service" ]; then
    $SUDO "/etc/init.d/$service" stop >/dev/null 2>&1 || true
  fi
done
echo "starttls-servers: ready"
