#!/usr/bin/env python3
"""Offline validator for FHIR R4 (4.0.1) AuditEvent resources.

Validates a JSON file (one resource or a Bundle) or an NDJSON file (one
resource per line) against the official FHIR R4 JSON schema
(fhir.schema.json, draft-06, "id": "http://hl7.org/fhir/json-schema/4.0").
With --balp it additionally checks the main IHE BALP (Basic Audit Log
Patterns, ihe.iti.balp) constraints for RESTful read/vread, create,
update/patch, delete and search events (success profiles).

Exit status: 0 = everything valid, 1 = at least one invalid resource,
2 = usage / IO / schema problem.

Usage:
  fhir_validate.py [--schema PATH] [--balp] [--any-type] FILE [FILE...]
  (FILE "-" reads stdin; *.ndjson / *.jsonl are read line by line,
   anything else is parsed as JSON first and falls back to NDJSON.)
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from typing import Any, Iterator

try:
    import jsonschema
    from jsonschema import Draft6Validator
except ImportError:  # pragma: no cover
    sys.exit("fhir_validate: python package 'jsonschema' is required (pip install jsonschema==4.26.0)")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.environ.get("FHIR_R4_SCHEMA", os.path.join(HERE, "fhir.schema.r4-4.0.1.json"))

DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PROVENANCE_PT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
BALP_SD = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"


# --------------------------------------------------------------------------- schema
class Schema:
    def __init__(self, path: str):
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        if raw.get("id") != "http://hl7.org/fhir/json-schema/4.0":
            raise ValueError(f"{path}: not the FHIR R4 JSON schema (id={raw.get('id')!r})")
        if "valueMeta" not in raw["definitions"]["Extension"]["properties"]:
            raise ValueError(f"{path}: looks like the R4 4.0.0 schema, 4.0.1 expected")
        self.definitions = raw["definitions"]
        # Bundle.entry.resource is a 146-way oneOf in the official schema, whose
        # errors are unreadable: accept any object there and validate each
        # entry resource separately against its own definition instead.
        defs = copy.deepcopy(self.definitions)
        defs["Bundle_Entry"]["properties"]["resource"] = {"type": "object"}
        self._bundle_defs = defs
        self.resource_types = {r["$ref"].rsplit("/", 1)[-1] for r in self.definitions["ResourceList"]["oneOf"]}
        self._cache: dict[str, Draft6Validator] = {}

    def validator(self, resource_type: str) -> Draft6Validator | None:
        if resource_type not in self.resource_types:
            return None
        if resource_type not in self._cache:
            defs = self._bundle_defs if resource_type == "Bundle" else self.definitions
            schema = {"$ref": f"#/definitions/{resource_type}", "definitions": defs}
            self._cache[resource_type] = Draft6Validator(schema)
        return self._cache[resource_type]


def _path(err: jsonschema.ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path) or "(root)"


def _messages(err: jsonschema.ValidationError) -> list[str]:
    """Flatten an error; for oneOf/anyOf show the most relevant sub-errors."""
    if err.context:
        best = jsonschema.exceptions.best_match(err.context)
        return _messages(best)
    msg = err.message
    if len(msg) > 300:
        msg = msg[:300] + "..."
    return [f"{_path(err)}: {msg}"]


# --------------------------------------------------------------------------- BALP
def _codings(cc: Any) -> list[dict]:
    if not isinstance(cc, dict):
        return []
    if "coding" in cc:
        return [c for c in cc.get("coding", []) if isinstance(c, dict)]
    return [cc]  # a bare Coding


def _has(cc: Any, system: str, *codes: str) -> bool:
    return any(c.get("system") == system and c.get("code") in codes for c in _codings(cc))


BALP_KINDS = {
    # subtype code -> (kind, action, client type, server type, user types)
    "read": ("Read", "R", (DCM, "110152"), (DCM, "110153"), (PARTICIPATION, ("IRCP",))),
    "vread": ("Read", "R", (DCM, "110152"), (DCM, "110153"), (PARTICIPATION, ("IRCP",))),
    "create": ("Create", "C", (DCM, "110153"), (DCM, "110152"), (PARTICIPATION, ("AUT", "INF", "CST"))),
    "update": ("Update", "U", (DCM, "110153"), (DCM, "110152"), (PARTICIPATION, ("AUT", "INF", "CST"))),
    "patch": ("Update", "U", (DCM, "110153"), (DCM, "110152"), (PARTICIPATION, ("AUT", "INF", "CST"))),
    "delete": ("Delete", "D", (DCM, "110150"), (PROVENANCE_PT, "custodian"), (PARTICIPATION, ("AUT", "INF", "CST"))),
    "search": ("Query", "E", (DCM, "110153"), (DCM, "110152"), (PARTICIPATION, ("IRCP",))),
    "search-type": ("Query", "E", (DCM, "110153"), (DCM, "110152"), (PARTICIPATION, ("IRCP",))),
    "search-system": ("Query", "E", (DCM, "110153"), (DCM, "110152"), (PARTICIPATION, ("IRCP",))),
}


def balp_check(ae: dict) -> list[str]:
    errs: list[str] = []
    if not _has(ae.get("type"), AUDIT_EVENT_TYPE, "rest"):
        return ["BALP: type must be audit-event-type#rest"]
    sub = [c.get("code") for c in ae.get("subtype", []) if c.get("system") == RESTFUL and c.get("code") in BALP_KINDS]
    if len(sub) != 1:
        return ["BALP: exactly one subtype from http://hl7.org/fhir/restful-interaction "
                f"(one of {sorted(BALP_KINDS)}) is required, found {sub}"]
    kind, action, client_t, server_t, user_t = BALP_KINDS[sub[0]]
    profiles = [p for p in ae.get("meta", {}).get("profile", []) if p.startswith(BALP_SD)]
    patient_profile = any(p.rsplit("/", 1)[-1].startswith("IHE.BasicAudit.Patient") for p in profiles)
    if ae.get("action") != action:
        errs.append(f"BALP {kind}: action must be {action!r}, got {ae.get('action')!r}")
    if ae.get("outcome") != "0":
        errs.append(f"BALP {kind}: the BALP profiles describe successful events; outcome must be '0'")
    if "recorded" not in ae:
        errs.append(f"BALP {kind}: recorded is required")

    agents = ae.get("agent", [])
    for label, (system, code) in (("client", client_t), ("server", server_t)):
        hits = [a for a in agents if _has(a.get("type"), system, code)]
        if len(hits) != 1:
            errs.append(f"BALP {kind}: exactly one agent[{label}] with type {system}#{code} required, found {len(hits)}")
            continue
        a = hits[0]
        if "who" not in a:
            errs.append(f"BALP {kind}: agent[{label}].who is required")
        if "network" not in a:
            errs.append(f"BALP {kind}: agent[{label}].network is required")
        if "media" in a:
            errs.append(f"BALP {kind}: agent[{label}].media is not allowed")
    users = [a for a in agents if _has(a.get("type"), user_t[0], *user_t[1])]
    if len(users) > 1:
        errs.append(f"BALP {kind}: at most one agent[user] ({'/'.join(user_t[1])}) allowed")
    for u in users:
        if u.get("requestor") is not True:
            errs.append(f"BALP {kind}: agent[user].requestor must be true")
        if "who" not in u:
            errs.append(f"BALP {kind}: agent[user].who is required")
        for forbidden in ("network", "media"):
            if forbidden in u:
                errs.append(f"BALP {kind}: agent[user].{forbidden} is not allowed (0..0)")

    entities = ae.get("entity", [])
    if kind == "Query":
        q = [e for e in entities if _has(e.get("type"), ENTITY_TYPE, "2") and _has(e.get("role"), OBJECT_ROLE, "24")]
        if len(q) != 1:
            errs.append("BALP Query: exactly one entity[query] (type audit-entity-type#2, role object-role#24) required")
        else:
            if "query" not in q[0]:
                errs.append("BALP Query: entity[query].query (base64) is required")
            for forbidden in ("what", "lifecycle", "detail"):
                if forbidden in q[0]:
                    errs.append(f"BALP Query: entity[query].{forbidden} is not allowed")
    else:
        d = [e for e in entities if _has(e.get("type"), ENTITY_TYPE, "2")
             and not _has(e.get("role"), OBJECT_ROLE, "24")]
        if len(d) != 1:
            errs.append(f"BALP {kind}: exactly one entity[data] (type audit-entity-type#2) required, found {len(d)}")
        else:
            if not _has(d[0].get("role"), OBJECT_ROLE, "4", "3", "20"):
                errs.append(f"BALP {kind}: entity[data].role must be object-role#4|#3|#20")
            if "what" not in d[0]:
                errs.append(f"BALP {kind}: entity[data].what is required")
    pats = [e for e in entities if _has(e.get("type"), ENTITY_TYPE, "1") and _has(e.get("role"), OBJECT_ROLE, "1")]
    if patient_profile and len(pats) != 1:
        errs.append(f"BALP Patient{kind}: exactly one entity[patient] (type audit-entity-type#1, role object-role#1) required")
    for p in pats:
        what = p.get("what")
        if not isinstance(what, dict):
            errs.append("BALP: entity[patient].what is required")
        else:
            ref = what.get("reference", "")
            if not (what.get("type") == "Patient" or ref.startswith("Patient/") or "/Patient/" in ref):
                errs.append("BALP: entity[patient].what must be a Reference(Patient) (reference Patient/.. or type 'Patient')")
    for t in (e for e in entities if _has(e.get("type"), BALP_ENTITY_TYPE, "XrequestId")):
        if not t.get("what", {}).get("identifier", {}).get("value"):
            errs.append("BALP: entity[transaction].what.identifier.value is required")
    return errs


# --------------------------------------------------------------------------- driver
def read_resources(path: str) -> Iterator[tuple[str, Any]]:
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    if not path.endswith((".ndjson", ".jsonl")):
        try:
            yield path, json.loads(text)
            return
        except json.JSONDecodeError:
            pass
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path}:{n}", json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"{path}:{n}", exc


def validate_resource(schema: Schema, res: Any, where: str, args, top: bool = True) -> list[str]:
    if isinstance(res, Exception):
        return [f"{where}: not JSON: {res}"]
    if not isinstance(res, dict) or "resourceType" not in res:
        return [f"{where}: not a FHIR resource (no resourceType)"]
    rt = res["resourceType"]
    allowed = ("AuditEvent", "Bundle") if top else ("AuditEvent",)
    if not args.any_type and rt not in allowed:
        return [f"{where}: resourceType {rt!r} not accepted here (expected {' or '.join(allowed)})"]
    v = schema.validator(rt)
    if v is None:
        return [f"{where}: unknown FHIR R4 resourceType {rt!r}"]
    label = f"{where} {rt}" + (f"/{res['id']}" if isinstance(res.get("id"), str) else "")
    errs = []
    for err in sorted(v.iter_errors(res), key=lambda e: list(map(str, e.absolute_path))):
        errs.extend(f"{label}: {m}" for m in _messages(err))
    if rt == "Bundle":
        for i, entry in enumerate(res.get("entry", []) or []):
            if isinstance(entry, dict) and "resource" in entry:
                errs.extend(validate_resource(schema, entry["resource"], f"{label}.entry[{i}].resource", args, top=False))
    elif rt == "AuditEvent" and args.balp and not errs:
        errs.extend(f"{label}: {m}" for m in balp_check(res))
    return errs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA, help="FHIR R4 4.0.1 fhir.schema.json (default: %(default)s)")
    ap.add_argument("--balp", action="store_true", help="also check IHE BALP RESTful success-profile constraints")
    ap.add_argument("--any-type", action="store_true", help="accept any R4 resource type, not only AuditEvent/Bundle")
    ap.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    args = ap.parse_args(argv)
    try:
        schema = Schema(args.schema)
    except (OSError, ValueError, KeyError) as exc:
        print(f"fhir_validate: cannot load schema: {exc}", file=sys.stderr)
        return 2
    n_ok = n_bad = 0
    for f in args.files:
        try:
            items = list(read_resources(f))
        except OSError as exc:
            print(f"fhir_validate: {exc}", file=sys.stderr)
            return 2
        for where, res in items:
            errs = validate_resource(schema, res, where, args)
            if errs:
                n_bad += 1
                for e in errs:
                    print(f"INVALID {e}")
            else:
                n_ok += 1
                if not args.quiet:
                    print(f"ok      {where}")
    print(f"{n_ok} valid, {n_bad} invalid", file=sys.stderr)
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
