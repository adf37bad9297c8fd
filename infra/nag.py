"""cdk-nag 3 acknowledgements, kept narrow: one finding id per call, each with its reason.

cdk-nag 3 reports through CDK's policy validation; `Validations.of(c).acknowledge(...)` on a
construct covers that construct and its children. IAM5 findings are per wildcard, named
`AwsSolutions-IAM5[Resource::<flattened ARN>]`; `grant()` below adds a statement to a role and
acknowledges exactly the wildcards that statement introduces, with the reason given next to it,
so a wildcard can never be acknowledged without the statement that needs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one rule (e.g. `IAM4[Policy::...]`, `APIG3`) on `scope` and its children."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{PACK}-{rule}", reason=reason))


def flatten_reference(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag names it in a finding id (flattenCfnReference)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict):
        if "Fn::Join" in value:
            delimiter, items = value["Fn::Join"]
            return str(delimiter).join(flatten_reference(item) for item in items)
        if "Fn::Sub" in value:
            return flatten_reference(value["Fn::Sub"])
        if "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            return f"<{flatten_reference(resource)}.{flatten_reference(attribute)}>"
        if "Fn::ImportValue" in value:
            return flatten_reference(value["Fn::ImportValue"])
        if "Ref" in value:
            return f"<{flatten_reference(value['Ref'])}>"
    return json.dumps(value, separators=(",", ":"))


def wildcard_findings(scope: IConstruct, statement: iam.PolicyStatement) -> list[str]:
    """The IAM5 finding ids (without the pack prefix) this Allow statement would raise."""
    resolved = cdk.Stack.of(scope).resolve(statement.to_statement_json())
    findings: list[str] = []
    for action in _as_list(resolved.get("Action")):
        if "*" in action:
            findings.append(f"IAM5[Action::{action}]")
    for resource in _as_list(resolved.get("Resource")):
        flat = flatten_reference(resource)
        if "*" in flat:
            findings.append(f"IAM5[Resource::{flat}]")
    return findings


def grant(
    scope: IConstruct, role: iam.IRole, statement: iam.PolicyStatement, *, reason: str | None = None
) -> None:
    """Add `statement` to `role`; acknowledge its wildcards on `scope` with `reason`."""
    role.add_to_principal_policy(statement)
    findings = wildcard_findings(scope, statement)
    if findings and not reason:
        raise ValueError(f"statement with wildcards needs a reason: {findings}")
    for finding in findings:
        acknowledge(scope, finding, reason or "")


def _as_list(value: Any) -> Iterable[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
