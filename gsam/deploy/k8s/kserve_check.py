"""Child-process entry of validate.check_inference_service: an InferenceService as JSON on stdin,
{"class": ..., "object": ...} on stdout, or one error line on stderr and exit code 1."""

from __future__ import annotations

import json
import sys

from gsam.errors import GSAMError

from .validate import roundtrip_inference_service


def main() -> int:
    try:
        result = roundtrip_inference_service(json.loads(sys.stdin.read()))
    except GSAMError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
