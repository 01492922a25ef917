#!/usr/bin/env bash
# Ensure the Debian packages needed by the real-service tests and benchmarks are installed.
# Idempotent: does nothing (and no apt-get update) when everything is already present.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# package -> a command (or glob) proving it is installed and usable
have_postgresql() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
have_redis_server() { command -v redis-server >/dev/null 2>&1; }
have_wrk() { command -v wrk >/dev/null 2>&1; }
have_curl() { command -v curl >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1; }  # the status page's browser test
have_chromedriver() { command -v chromedriver >/dev/null 2>&1; }
# prometheus + promtool: the alert rules' unit tests and a real server that fires them. The tests
# start their own on a free port; on a systemd host the package also enables a service on :9090.
have_prometheus() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }
have_util_linux() { command -v taskset >/dev/null 2>&1 && { command -v runuser >/dev/null 2>&1 || [ -x /usr/sbin/runuser ]; }; }

missing=()
have_postgresql || missing+=(postgresql)
have_redis_server || missing+=(redis-server)
have_wrk || missing+=(wrk)
have_util_linux || missing+=(util-linux)
have_curl || missing+=(curl)
have_chromium || missing+=(chromium)
have_chromedriver || missing+=(chromium-driver)
have_prometheus || missing+=(prometheus)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "system deps: all present (postgresql, redis-server, wrk, util-linux, curl, chromium, chromium-driver, prometheus)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "system deps: missing ${missing[*]}; re-run as root (sudo $0) to install them" >&2
    exit 1
fi

echo "system deps: missing ${missing[*]}; running apt-get update"
apt-get update -qq
echo "system deps: installing ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

echo "system deps: done"
