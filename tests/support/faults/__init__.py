"""Test tooling that breaks things on purpose: a fault-injecting S3 reverse proxy."""

from tests.support.faults.proxy import (
    BodyHook,
    Emulation,
    FaultKind,
    FaultPolicy,
    FaultProxy,
    FaultRule,
    RequestInfo,
)

__all__ = [
    "BodyHook",
    "Emulation",
    "FaultKind",
    "FaultPolicy",
    "FaultProxy",
    "FaultRule",
    "RequestInfo",
]
