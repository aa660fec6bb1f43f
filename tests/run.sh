#!/usr/bin/env bash
# Runs every test CI runs, on a fresh Debian machine too: installs the packages the tests use,
# makes sure PostgreSQL is up (127.0.0.1:5432, trust auth, database `test`), then runs the
# workspace's tests. Usage: tests/run.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: pcsc-lite headers (the pcsc crate links them), pcscd and the vpcd virtual
# reader (the card tests run the real PC/SC stack), the real clients the tests
# drive (curl, openssl), the PostgreSQL client for test database clean-up, and for the tunnel
# tests network namespaces (iproute2) with an independent WireGuard peer (wireguard-go, wg) and
# iperf3 for the tunnel benchmark, zbar-tools to read back the QR codes, and for the browser
# test (tests/browser.rs) Chromium with chromedriver, the NSS tools that give it the terminal's
# certificate, and Japanese fonts; systemd-analyze (package systemd) scores the unit file;
# xmllint (libxml2-utils) validates the exported ATNA messages against the DICOM schema;
# podman with runc, its network plugins and iptables to build and run the container image
# (tests/container.rs), and debootstrap for its base image (no registry needed).
need=()
for pkg in libpcsclite-dev pcscd systemd vsmartcard-vpcd curl openssl postgresql-client pkg-config iproute2 wireguard-go wireguard-tools iperf3 zbar-tools chromium chromium-driver libnss3-tools fonts-noto-cjk libxml2-utils podman runc containernetworking-plugins iptables debootstrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Kubernetes manifests are validated offline against the API schemas (tests/deployment.rs).
python3 -m kubernetes_validate --version >/dev/null 2>&1 || python3 -m pip install -q kubernetes-validate==1.37.0
# The exported FHIR AuditEvents are validated against HL7's R4 JSON schema (tests/tools/).
python3 -c 'import jsonschema' 2>/dev/null || python3 -m pip install -q -r tests/tools/requirements-fhir.txt
tests/tools/fhir-schema.sh target/fhir-schema >/dev/null

# PostgreSQL: every store test runs on it as well as on SQLite.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is needed at 127.0.0.1:5432 (user postgres, trust auth)"; exit 1; }

# vpcd's readers listen on 35963 and 35964, inside Linux's ephemeral port range: a test's
# loopback connection that happened to use one (even in TIME-WAIT) kept pcscd from opening that
# reader ("Address already in use"), and every card test on it failed. Reserved, no connection
# is given them.
sysctl -q -w net.ipv4.ip_local_reserved_ports=35963-35964 2>/dev/null \
  || echo "warning: cannot reserve ports 35963-35964 for vpcd; a card test may find its reader missing"

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# Fuzzing: every target built and run briefly from its corpus; a crash fails the run
# (docs/fuzzing.md). SEKISHO_FUZZ_SECONDS=0 skips it.
# Unoptimised, built where the next run on this machine finds it again: cold, the build is
# most of the time this takes.
fuzz_seconds=${SEKISHO_FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" != 0 ]; then
  FUZZ_PROFILE=${FUZZ_PROFILE:-dev} \
  FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sekisho/fuzz-target} \
    fuzz/run.sh "$fuzz_seconds" || status=$?
fi
# One closing line for every test binary together (cargo's last line is often a doc-test
# binary with nothing in it).
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
