"""The part of kustomize that infra/k8s uses, so that the tests render it where no kubectl is
installed: resources (files and folders with a kustomization), a secretGenerator from env files
without a name hash, labels on metadata, and patches: strategic merge patches (the merge keys
of the fields used here) and JSON 6902 patches with a target. Anything else it is given is an
error, not a silent difference. Where kubectl is installed, test_k8s compares the two renders.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]
KNOWN = {"apiVersion", "kind", "resources", "labels", "patches", "secretGenerator", "generatorOptions"}
# Strategic merge: the lists merged item by item, by this key (Kubernetes' patchMergeKey);
# any other list is replaced whole, as tolerations and envFrom are.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}


def render(folder: Path, env_files: dict[str, Path] | None = None) -> list[Resource]:
    """The resources of the kustomization in ``folder``. ``env_files`` stands in for generator
    files that are not in the tree (``keys.env``, which each operator writes)."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN
    if unknown:
        raise ValueError(f"{folder}: kustomization fields this renderer does not do: {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            resources += render(path, env_files)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    resources += _secrets(folder, spec, env_files or {})
    for patch in spec.get("patches", []):
        _patch(resources, folder, patch)
    for labels in spec.get("labels", []):
        if set(labels) - {"pairs"}:
            raise ValueError(f"{folder}: only plain label pairs are done here: {labels}")
        for resource in resources:
            resource.setdefault("metadata", {}).setdefault("labels", {}).update(labels["pairs"])
    return resources


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    (found,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def _secrets(folder: Path, spec: dict[str, Any], env_files: dict[str, Path]) -> list[Resource]:
    generators = spec.get("secretGenerator", [])
    if generators and not spec.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise ValueError(f"{folder}: generated names with a hash suffix are not done here")
    secrets = []
    for generator in generators:
        data: dict[str, str] = {}
        for name in generator["envs"]:
            path = env_files.get(name, folder / name)
            for line in path.read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    key, _, value = line.partition("=")
                    data[key.strip()] = base64.b64encode(value.encode()).decode()
        secrets.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": "Opaque",
                "data": data,
            }
        )
    return secrets


def _patch(resources: list[Resource], folder: Path, patch: dict[str, Any]) -> None:
    body = yaml.safe_load((folder / patch["path"]).read_text())
    if isinstance(body, list):  # JSON 6902
        target = patch["target"]
        (resource,) = [r for r in resources if _matches(r, target)]
        for op in body:
            _json6902(resource, op)
        return
    if "target" in patch:
        raise ValueError(f"{patch}: a strategic merge patch with a target is not done here")
    resource = find(resources, body["kind"], body["metadata"]["name"])
    merged = _merge(resource, body)
    resource.clear()
    resource.update(merged)


def _matches(resource: Resource, target: dict[str, str]) -> bool:
    group, _, version = resource["apiVersion"].rpartition("/")
    wanted = {"group": group, "version": version, "kind": resource["kind"], "name": resource["metadata"]["name"]}
    return all(wanted[key] == value for key, value in target.items())


def _merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value, key) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged_list = copy.deepcopy(base)
        for item in patch:
            same = [n for n, old in enumerate(merged_list) if old.get(key) == item.get(key)]
            if same:
                merged_list[same[0]] = _merge(merged_list[same[0]], item, "")
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _json6902(resource: Resource, op: dict[str, Any]) -> None:
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]]
    node: Any = resource
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op["op"] == "add":
            node.insert(index, op["value"])
        elif op["op"] == "replace":
            node[index] = op["value"]
        elif op["op"] == "remove":
            del node[index]
        else:
            raise ValueError(f"JSON patch op {op['op']!r} is not done here")
        return
    if op["op"] in ("add", "replace"):
        if op["op"] == "replace" and last not in node:
            raise ValueError(f"JSON patch replaces {op['path']}, which is not there")
        node[last] = op["value"]
    elif op["op"] == "remove":
        del node[last]
    else:
        raise ValueError(f"JSON patch op {op['op']!r} is not done here")
