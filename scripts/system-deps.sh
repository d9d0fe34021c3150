#!/usr/bin/env bash
# System packages the test suite needs, installed only when missing (idempotent):
#   PostgreSQL 15 with the q3c and pg_sphere extensions, answering on 127.0.0.1:5432.
# As root it installs and starts what is missing; otherwise it says what to run.
set -euo pipefail

PG_VERSION="${PG_VERSION:-15}"
PKGS=("postgresql-${PG_VERSION}-q3c" "postgresql-${PG_VERSION}-pgsphere")
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; fi
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v pg_ctlcluster >/dev/null 2>&1; then missing+=("postgresql-${PG_VERSION}"); fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "system-deps: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "system-deps: missing ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
  fi
fi

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "system-deps: starting PostgreSQL ${PG_VERSION}"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "${PG_VERSION}" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "system-deps: PostgreSQL answers on 127.0.0.1:5432"
else
  echo "system-deps: PostgreSQL is NOT answering on 127.0.0.1:5432 (postgres tests will fail in CI)" >&2
fi
