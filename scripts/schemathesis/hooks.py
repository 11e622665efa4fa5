"""Schemathesis hooks for Hamlet (loaded through SCHEMATHESIS_HOOKS by tests/tests/schemathesis.rs
and by the command in docs/operations.md).

Every few seconds the run logs in again, as HAMLET_ST_USER with a fresh device id, so a test
case that logs out, revokes a device or disables a user ends at most one short-lived session
instead of turning the rest of the run into 401s.
"""

import json
import os
import urllib.request
import uuid

import schemathesis

BASE = os.environ["HAMLET_ST_BASE"]
USER = os.environ.get("HAMLET_ST_USER", "demo-admin")
PASSWORD = os.environ["HAMLET_ST_PASSWORD"]


@schemathesis.auth(refresh_interval=3)
class HamletLogin:
    def get(self, case, ctx):
        device_id = str(uuid.uuid4())
        body = json.dumps(
            {"username": USER, "password": PASSWORD, "device_id": device_id}
        ).encode()
        req = urllib.request.Request(
            f"{BASE}/api/v1/auth/login",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.load(res)["access_token"], device_id

    def set(self, case, data, ctx):
        token, device_id = data
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {token}"
        # A push names the session's device or is refused (403) before its mutations are read:
        # a generated push with a well-formed device id gets the session's, so its mutations
        # reach the push service (a malformed one is left as generated, to be refused).
        if (
            case.method.upper() == "POST"
            and case.path == "/api/v1/sync/push"
            and isinstance(case.body, dict)
            and is_uuid(case.body.get("device_id"))
        ):
            case.body["device_id"] = device_id


def is_uuid(value):
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False
