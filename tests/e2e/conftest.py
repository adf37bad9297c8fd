"""The e2e tests' one fixture: the local stack for the session (tests/support/stack.py)."""

from tests.support.stack import stack

__all__ = ["stack"]
