#!/usr/bin/env python3
"""Generates apiserver/src/openapi/definitions.json: the Kubernetes v1.35 schemas in OpenAPI 3.0
form (`#/components/schemas/...` references, single `type` strings), with their descriptions and
every `x-kubernetes-*` extension, from ../shared/openapi/v1.35-definitions.json (JSON Schema 2020-12,
from the PyPI package kubernetes-validate). Run from the repository root:

    python3 scripts/gen-openapi-definitions.py
"""

import json
import os

HERE = os.path.dirname(__file__)
SOURCE = os.path.join(HERE, "..", "..", "shared", "openapi", "v1.35-definitions.json")
OUT = os.path.join(HERE, "..", "apiserver", "src", "openapi", "definitions.json")


def convert(node, key=None):
    if isinstance(node, list):
        return [convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node and len(node) > 1:
        # As upstream's v3 documents: a reference with its own description is wrapped in allOf.
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {"allOf": [{"$ref": node["$ref"]}], **rest}
    out = {}
    for name, value in node.items():
        if name == "$ref" and isinstance(value, str):
            out[name] = value.replace("#/$defs/", "#/components/schemas/")
        elif name == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) == 1:
                out[name] = types[0]
            elif types:
                out[name] = types
        elif name == "enum" and key in ("apiVersion", "kind"):
            continue
        elif name == "properties" and isinstance(value, dict):
            out[name] = {prop: convert(schema, prop) for prop, schema in value.items()}
        else:
            out[name] = convert(value)
    return out


def main() -> None:
    definitions = json.load(open(SOURCE))["$defs"]
    converted = {name: convert(schema) for name, schema in definitions.items()}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as out:
        json.dump(converted, out, separators=(",", ":"), sort_keys=True)
    print(f"{len(converted)} schemas -> {OUT}")


if __name__ == "__main__":
    main()
