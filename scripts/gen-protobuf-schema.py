#!/usr/bin/env python3
"""Generates apiserver/src/protobuf/schema.json: for every Kubernetes type, its protobuf fields
(tag, JSON name, wire kind, message type, cardinality), and the group/version/kind of top-level types.

Inputs: the prost sources of the `k8s-pb` crate (field tags and types, as generated from upstream's
.proto files) and ../shared/openapi/v1.35-definitions.json (JSON field names and GVKs). Run from the
repository root after `cargo fetch` has downloaded k8s-pb (any crate depending on it will do):

    python3 scripts/gen-protobuf-schema.py ~/.cargo/registry/src/*/k8s-pb-0.9.0/src

Only data is produced; the decoder is apiserver/src/protobuf.rs.
"""

import glob
import json
import os
import re
import sys

OPENAPI = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "openapi", "v1.35-definitions.json")
OUT = os.path.join(os.path.dirname(__file__), "..", "apiserver", "src", "protobuf", "schema.json")

ATTR = re.compile(r'#\[prost\(([^)]*)\)\]')


def openapi_name(module: str, struct: str) -> str:
    """k8s-pb module path (api/core/v1) -> OpenAPI definition name (io.k8s.api.core.v1.X)."""
    parts = module.split("/")
    parts = [p.replace("apiextensions_apiserver", "apiextensions-apiserver").replace("kube_aggregator", "kube-aggregator") for p in parts]
    return "io.k8s." + ".".join(parts) + "." + struct


def resolve(type_text: str, module: str) -> str:
    """A Rust type path relative to `module` -> OpenAPI definition name of the referenced message."""
    path = re.sub(r'\s+', '', type_text).replace(",>", ">").rstrip(",")
    path = re.sub(r'^::core::option::Option<(.*)>$', r'\1', path)
    path = re.sub(r'^::prost::alloc::vec::Vec<(.*)>$', r'\1', path)
    m = re.match(r'^::prost::alloc::collections::BTreeMap<::prost::alloc::string::String,(.*)>$', path)
    if m:
        path = m.group(1)
    path = path.replace("::prost::alloc::boxed::Box<", "").rstrip(">")
    segments = path.split("::")
    base = module.split("/")
    while segments and segments[0] == "super":
        segments.pop(0)
        base = base[:-1]
    name = segments[-1]
    return openapi_name("/".join(base + segments[:-1]), name)


def field_after(text: str):
    """(name, type) of the `pub name: Type,` that follows an attribute."""
    m = re.match(r'\s*pub (?:r#)?([a-z0-9_]+):', text)
    if not m:
        return None
    depth, i = 0, m.end()
    while i < len(text):
        c = text[i]
        if c == '<':
            depth += 1
        elif c == '>':
            depth -= 1
        elif c == ',' and depth == 0:
            break
        i += 1
    return m.group(1), text[m.end():i]


def snake(name: str) -> str:
    """heck-style snake_case, as prost names fields."""
    out = re.sub(r'([A-Z]+)([A-Z][a-z])', r'\1_\2', name)
    out = re.sub(r'([a-z0-9])([A-Z])', r'\1_\2', out)
    return out.lower()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def main() -> None:
    src = sys.argv[1]
    defs = json.load(open(OPENAPI))["$defs"]
    types = {}
    for path in glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), src).replace(os.sep, "/")
        text = open(path).read()
        for struct in re.finditer(r'pub struct ([A-Za-z0-9]+) \{(?:\}|(.*?)\n\})', text, re.S):
            name, body = struct.group(1), struct.group(2) or ""
            full = openapi_name(module, name)
            props = defs.get(full, {}).get("properties", {})
            by_snake = {snake(p): p for p in props}
            fields = []
            chunks = ATTR.split(body)
            # chunks: [pre, attr1, rest1, attr2, rest2, ...]
            for attr, rest in zip(chunks[1::2], chunks[2::2]):
                parsed = field_after(rest)
                if parsed is None:
                    continue
                rust_name, type_text = parsed
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                json_name = by_snake.get(rust_name, camel(rust_name))
                if rust_name == "raw" and name in ("RawExtension", "FieldsV1", "Unknown"):
                    json_name = "Raw" if name == "FieldsV1" else "raw"
                kind = attr.split(",")[0].strip()
                entry = {"tag": tag, "name": json_name}
                if kind.startswith("btree_map"):
                    value = re.search(r'"string, (\w+)"', attr).group(1)
                    entry["map"] = value
                    if value == "message":
                        entry["type"] = resolve(type_text, module)
                else:
                    entry["kind"] = kind.split("=")[0].strip()
                    if "repeated" in attr:
                        entry["repeated"] = True
                    if entry["kind"] == "message":
                        entry["type"] = resolve(type_text, module)
                fields.append(entry)
            types[full] = fields
    gvks = {}
    for name, definition in defs.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            api_version = gvk["version"] if not gvk["group"] else f'{gvk["group"]}/{gvk["version"]}'
            gvks.setdefault(f'{api_version}/{gvk["kind"]}', name)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as out:
        json.dump({"types": types, "kinds": gvks}, out, separators=(",", ":"), sort_keys=True)
    print(f"{len(types)} types, {len(gvks)} kinds -> {OUT}")


if __name__ == "__main__":
    main()
