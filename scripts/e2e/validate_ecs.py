"""Validates an ECS task definition against the ECS API model that botocore ships: the JSON must
be acceptable as `aws ecs register-task-definition --cli-input-json` (unknown fields, wrong types,
missing required members and bad enum values are errors). Beyond the model: API_KEYS comes from
`secrets` (Secrets Manager), never from plain `environment`, and a task that reads secrets names
the execution role that fetches them (ECS refuses to start it otherwise).

Usage: python3 scripts/e2e/validate_ecs.py deploy/ecs/task-definition-staging.json
Needs: pip install botocore
"""

import json
import sys

import botocore.session
from botocore.validate import ParamValidator


def enum_errors(shape, value, path):
    """botocore's validator does not check enums; do it here."""
    out = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members:
                out += enum_errors(shape.members[k], v, f"{path}.{k}")
    elif shape.type_name == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            out += enum_errors(shape.member, v, f"{path}[{i}]")
    elif shape.type_name == "string" and shape.enum and value not in shape.enum:
        out.append(f"{path}: {value!r} is not one of {shape.enum}")
    return out


def secret_errors(params):
    out = []
    for c in params.get("containerDefinitions", []):
        plain = {e["name"] for e in c.get("environment", [])}
        secret = {e["name"]: e["valueFrom"] for e in c.get("secrets", [])}
        if "API_KEYS" in plain:
            out.append(f"{c['name']}: API_KEYS is in environment (plain text); it belongs in secrets")
        if "API_KEYS" not in secret:
            out.append(f"{c['name']}: API_KEYS is not taken from secrets (Secrets Manager)")
        elif not secret["API_KEYS"].startswith("arn:aws:secretsmanager:"):
            out.append(f"{c['name']}: API_KEYS valueFrom is not a Secrets Manager ARN")
        if secret and not params.get("executionRoleArn"):
            out.append(f"{c['name']}: secrets need executionRoleArn (the role that reads them)")
    return out


def main():
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    failed = False
    for path in sys.argv[1:]:
        params = json.load(open(path))
        report = ParamValidator().validate(params, shape)
        problems = ([report.generate_report()] if report.has_errors() else []) + enum_errors(shape, params, "")
        problems += secret_errors(params)
        if problems:
            failed = True
            print(f"FAIL {path}:\n  " + "\n  ".join(problems))
        else:
            print(f"ok   {path}: a valid RegisterTaskDefinition input, API_KEYS from Secrets Manager")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
