"""The JSON Schema of users.yaml, generated from the pydantic models (never edited by hand)."""

from __future__ import annotations

import json

from .desired import UsersFile

SCHEMA_PATH = "schemas/users.schema.json"


def schema_text() -> str:
    schema = UsersFile.model_json_schema()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **{k: v for k, v in schema.items() if k != "$schema"},
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
