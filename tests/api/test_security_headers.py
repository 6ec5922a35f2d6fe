"""The API's answers and its documentation page carry security headers (api/headers.py)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi.testclient import TestClient

from townhall.api.headers import JSON_POLICY
from townhall.app import create_app
from townhall.config import load


def test_json_answers_and_the_docs_page_carry_security_headers(tmp_path: Path) -> None:
    with TestClient(create_app(load({}, data_dir=tmp_path))) as client:
        for answer in (
            client.get("/api/spaces"),
            client.get("/api/auth/me"),
            client.get("/api/spaces/zzzzzzzzzz"),  # an error answer too
            client.get("/api/openapi.json"),
        ):
            assert answer.headers["content-type"].startswith("application/json")
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "no-referrer"
            assert answer.headers["content-security-policy"] == JSON_POLICY

        docs = client.get("/api/docs")
        assert docs.status_code == 200
        assert docs.headers["x-content-type-options"] == "nosniff"
        policy = docs.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy
        assert "connect-src 'self'" in policy
        # The page's own inline script is allowed by its hash, and nothing inline besides.
        inline = re.findall(rb"<script>(.*?)</script>", docs.content, re.DOTALL)
        assert len(inline) == 1
        digest = base64.b64encode(hashlib.sha256(inline[0]).digest()).decode()
        assert f"'sha256-{digest}'" in policy
        assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
