#!/usr/bin/env bash
# Installs the Debian tools the integration tests use as a user would: kcat (a non-Python
# Kafka client), Prometheus + promtool and Alertmanager (on-call integration), Chromium (a
# screenshot of the HTML report). Idempotent: installs only what is missing.
set -euo pipefail
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
# Packaged services must not start and take the ports the tests choose (no-op without systemd).
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
