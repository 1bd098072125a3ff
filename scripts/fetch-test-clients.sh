#!/usr/bin/env bash
# Fetches the real metadata clients that test/clients/ runs against our service, from Debian's apt:
#   - resource-agents: the Pacemaker agent azure-events-az (+ its python OCF library)
#   - cloud-init:      the Azure datasource (IMDS fetch + parsing), used as a python library
# and installs the Debian python packages they import. Nothing is installed from the two client
# packages themselves: they are downloaded with `apt-get download` and unpacked with `dpkg-deb -x`.
#
#   scripts/fetch-test-clients.sh [DIR]
#
# DIR defaults to $INTERMISSION_TEST_CLIENTS, then $INTERMISSION_CLIENTS_DIR, then tmp/test-clients in
# the repo (git-ignored). The tests look in the same places (plus /var/cache/intermission-clients).
#
# Layout afterwards:  DIR/resource-agents/usr/lib/ocf/...   DIR/cloud-init/usr/lib/python3/dist-packages/cloudinit
# Idempotent: a package already unpacked at apt's candidate version is left alone. Needs root for the
# apt-get install step (skipped when everything is installed already).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${INTERMISSION_TEST_CLIENTS:-${INTERMISSION_CLIENTS_DIR:-$repo/tmp/test-clients}}}
clients=(resource-agents cloud-init)
# What the two clients import at run time (cloud-init's Azure datasource needs yaml, requests,
# configobj; azure-events-az needs only python3). iproute2 and util-linux provide `ip netns`.
deps=(python3 python3-yaml python3-requests python3-configobj iproute2)

log() { printf 'fetch-test-clients: %s\n' "$*" >&2; }
apt_opts=(-o DPkg::Lock::Timeout=600 -o APT::Sandbox::User=root)

mkdir -p "$dir/debs"
dir=$(cd "$dir" && pwd)

missing=()
for p in "${deps[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages ${missing[*]}; run as root (or apt-get install them)"
    exit 1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_opts[@]}" "${missing[@]}" >&2 ||
    { apt-get update "${apt_opts[@]}" >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_opts[@]}" "${missing[@]}" >&2; }
fi

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }'; }

for pkg in "${clients[@]}"; do
  version=$(candidate "$pkg")
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    log "apt knows no candidate for $pkg; running apt-get update"
    apt-get update "${apt_opts[@]}" >&2
    version=$(candidate "$pkg")
  fi
  [ -n "$version" ] && [ "$version" != "(none)" ] || { log "no $pkg in apt's sources"; exit 1; }
  if [ -f "$dir/$pkg/.version" ] && [ "$(cat "$dir/$pkg/.version")" = "$version" ]; then
    log "$pkg $version already unpacked in $dir/$pkg"
    continue
  fi
  deb=$(find "$dir/debs" -maxdepth 1 -name "${pkg}_*.deb" -print | head -n 1)
  if [ -n "$deb" ] && [ "$(dpkg-deb -f "$deb" Version)" != "$version" ]; then
    rm -f "$deb"
    deb=
  fi
  if [ -z "$deb" ]; then
    log "downloading $pkg $version"
    (cd "$dir/debs" && apt-get download "${apt_opts[@]}" "$pkg=$version" >&2)
    deb=$(find "$dir/debs" -maxdepth 1 -name "${pkg}_*.deb" -print | head -n 1)
  fi
  rm -rf "$dir/$pkg.tmp"
  mkdir -p "$dir/$pkg.tmp"
  dpkg-deb -x "$deb" "$dir/$pkg.tmp"
  printf '%s\n' "$version" >"$dir/$pkg.tmp/.version"
  rm -rf "$dir/$pkg"
  mv "$dir/$pkg.tmp" "$dir/$pkg"
  log "$pkg $version unpacked in $dir/$pkg"
done

test -x "$dir/resource-agents/usr/lib/ocf/resource.d/heartbeat/azure-events-az"
test -f "$dir/resource-agents/usr/lib/ocf/lib/heartbeat/ocf.py"
test -f "$dir/cloud-init/usr/lib/python3/dist-packages/cloudinit/sources/DataSourceAzure.py"
/usr/bin/python3 -c 'import yaml, requests, configobj' >&2
echo "$dir"
