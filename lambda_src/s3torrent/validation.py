"""How a validation error reads: `where: what is wrong` for each error, joined by "; ".

The API's 422 answers, invalid settings (CDK context, environment, CLI flags) and refused
queue messages all say it this way, so one format points at the bad field wherever the
mistake was made. Standard library only: the lowest layers import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def describe_errors(
    errors: Iterable[Mapping[str, Any]], *, whole: str = "", limit: int | None = None
) -> str:
    """`loc.path: msg` for each error in pydantic's `errors()` shape, joined by "; ".

    An error about the input as a whole (an empty `loc`) is put at `whole`; `limit` keeps
    only the first few, for a log line.
    """
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or whole}: {item['msg']}"
        for item in list(errors)[:limit]
    )
