#!/usr/bin/env bash
# The test command: checks formatting and lints, installs the test peers from
# committed lockfiles, then runs every test. Usage: ./test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")"

# Formatting and lints first (the lints are configured in Cargo.toml and
# clippy.toml): every target, every feature, warnings are errors.
cargo fmt --check
cargo clippy -j2 --all-targets --all-features --locked -- -D warnings

# Test peers from committed lockfiles: the third-party authorization server
# (oidc-provider 8.x) the interop tests use, and a third-party JWT verifier.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "test.sh: node and npm are needed for the oidc-provider peer" >&2
  exit 1
fi
timeout 300 npm ci --prefix tests/peers/oidc-provider --no-audit --no-fund --loglevel=error
# A third-party JWT verifier (jose) for the issuer's tokens.
timeout 300 npm ci --prefix tests/peers/jose --no-audit --no-fund --loglevel=error

# The interop test refuses to skip when CI is set; set it here too so a
# missing peer is a failure, not a silent skip.
export CI="${CI:-true}"

# A real PostgreSQL for the store tests (tests/support/postgres.rs starts a
# throwaway cluster per test): Debian's `postgresql` is installed when initdb
# is missing; as root, the cluster runs as the unprivileged user m2m-test
# (initdb and postgres refuse root). Under CI=true a missing PostgreSQL is a
# failure, never a skip.
pg_bin() {
  local d
  if [ -n "${M2M_PG_BIN:-}" ] && [ -x "$M2M_PG_BIN/initdb" ]; then echo "$M2M_PG_BIN"; return; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  d=$(command -v initdb) && dirname "$(readlink -f "$d")"
}
if ! pg_bin >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "test.sh: installing postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  # No default cluster on port 5432: the tests start their own.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/m2m-tests.conf
  timeout 300 apt-get install -y -qq --no-install-recommends postgresql >/dev/null ||
    { timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq --no-install-recommends postgresql >/dev/null; } ||
    echo "test.sh: installing postgresql failed" >&2
fi
if M2M_PG_BIN=$(pg_bin); then
  export M2M_PG_BIN
  if [ "$(id -u)" = 0 ] && ! id -u m2m-test >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin m2m-test
  fi
elif [ "$CI" = true ]; then
  echo "test.sh: PostgreSQL (initdb) not found and could not be installed" >&2
  exit 1
else
  unset M2M_PG_BIN
  echo "test.sh: PostgreSQL not found; its tests will skip" >&2
fi
cargo test -j2 --locked --all-targets "$@"
# The optional OpenTelemetry feature: built and its end-to-end test run.
cargo test -j2 --locked --features otel --test otel "$@"
