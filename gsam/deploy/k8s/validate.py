"""Offline checks of generated manifests: Kubernetes JSON schemas and KServe's SDK models.

`kubernetes-validate` bundles the schemas of each Kubernetes release; strict mode also refuses
fields the schema does not know. The InferenceService is loaded into KServe's own
`V1beta1InferenceService`, field by field, so an unknown field, a missing required one or a
wrong type fails, and serialized back to check nothing was dropped. Nothing here talks to a
cluster.

KServe's SDK and tritonclient.grpc both register protobuf messages of the package `inference`
(`inference.ServerLiveRequest`, ...), so they cannot be imported into one process: the second
import fails. The KServe check therefore runs in a child interpreter (check_inference_service).
"""

from __future__ import annotations

import json
import re
import subprocess

from gsam.child import python_module
from gsam.errors import GSAMError

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def validate_kubernetes(obj: dict, version: str) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        raise GSAMError("validating manifests needs kubernetes-validate: pip install 'gsam[k8s]'") from None
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise GSAMError(f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}: invalid for Kubernetes {version} "
                        f"at {where or '(top)'}: {exc.message}") from None


def _resolve(type_name: str):
    import kserve.models
    import kubernetes.client

    for module in (kserve.models, kubernetes.client):
        if hasattr(module, type_name):
            return getattr(module, type_name)
    raise GSAMError(f"KServe SDK has no model class {type_name}")


def _load(value, type_name: str, where: str):
    """Build the SDK object for `value`, refusing unknown fields and wrong types."""
    if value is None:
        return None
    if match := re.fullmatch(r"list\[(.*)\]", type_name):
        if not isinstance(value, list):
            raise GSAMError(f"{where}: expected a list")
        return [_load(v, match[1], f"{where}[{i}]") for i, v in enumerate(value)]
    if match := re.fullmatch(r"dict\(([^,]*), (.*)\)", type_name):
        if not isinstance(value, dict):
            raise GSAMError(f"{where}: expected a mapping")
        return {k: _load(v, match[2], f"{where}.{k}") for k, v in value.items()}
    if type_name in PRIMITIVES:
        if not isinstance(value, PRIMITIVES[type_name]) or (type_name == "int" and isinstance(value, bool)):
            raise GSAMError(f"{where}: expected {type_name}, got {type(value).__name__}")
        return value
    klass = _resolve(type_name)
    if not isinstance(value, dict):
        raise GSAMError(f"{where}: expected a {type_name} mapping")
    if hasattr(klass, "model_validate"):  # the kubernetes client's pydantic models
        try:
            return klass.model_validate(value)
        except Exception as exc:  # pydantic.ValidationError
            raise GSAMError(f"{where}: not a valid {type_name}: {exc}".splitlines()[0]) from None
    by_json = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    unknown = sorted(set(value) - set(by_json))
    if unknown:
        raise GSAMError(f"{where}: {type_name} has no field(s) {', '.join(unknown)}")
    kwargs = {by_json[k]: _load(v, klass.openapi_types[by_json[k]], f"{where}.{k}") for k, v in value.items()}
    try:
        return klass(**kwargs)
    except ValueError as exc:  # client-side validation of required fields
        raise GSAMError(f"{where}: {exc}") from None


def load_inference_service(obj: dict):
    """The manifest as KServe's `V1beta1InferenceService`, or GSAMError naming the bad field."""
    try:
        from kserve import V1beta1InferenceService  # noqa: F401
    except ImportError:
        raise GSAMError("validating the InferenceService needs KServe's SDK: pip install 'gsam[k8s]'") from None
    if obj.get("apiVersion") != "serving.kserve.io/v1beta1" or obj.get("kind") != "InferenceService":
        raise GSAMError("expected apiVersion serving.kserve.io/v1beta1 and kind InferenceService")
    return _load(obj, "V1beta1InferenceService", "InferenceService")


def _contains(whole, part) -> bool:
    """Every field of `part` is in `whole` with the same value (the SDK adds empty defaults)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _contains(whole[k], v) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(whole) == len(part) and all(map(_contains, whole, part))
    return whole == part


def roundtrip_inference_service(obj: dict) -> dict:
    """Load into V1beta1InferenceService and serialize back with KServe's ApiClient (in this process)."""
    from kserve.api_client import ApiClient

    loaded = load_inference_service(obj)
    back = ApiClient().sanitize_for_serialization(loaded)
    if not _contains(back, obj):
        raise GSAMError("InferenceService: KServe's SDK dropped or changed fields when loading it")
    return {"class": type(loaded).__name__, "object": back}


def check_inference_service(obj: dict, timeout: float = 120.0) -> dict:
    """roundtrip_inference_service in a child interpreter (see the module docstring); GSAMError on failure."""
    try:
        done = subprocess.run(python_module("gsam.deploy.k8s.kserve_check"), input=json.dumps(obj),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GSAMError(f"checking the InferenceService with KServe's SDK took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise GSAMError(lines[-1] if lines else f"KServe SDK check exited with code {done.returncode}")
    return json.loads(done.stdout)
