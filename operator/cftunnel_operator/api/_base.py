"""The base of every CRD model: camelCase keys on the wire, snake_case names in Python.

Internal; the public models in ``tunnel`` and ``vpcservice`` build on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


def plain(value: Any) -> Any:
    """Deep copy of mappings and lists as plain ``dict`` and ``list``.

    Kopf hands specs over as read-only mapping views; pydantic wants dicts.
    """
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


class CRDModel(BaseModel):
    """A part of a CRD's spec or status.

    Unknown keys are ignored rather than refused: the apiserver has already pruned what the CRD
    does not know, and an operator older than its CRD must keep working.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    @classmethod
    def from_body(cls, body: Mapping[str, Any] | None) -> Self:
        """Parse the Kubernetes shape (camelCase keys); ``None`` means an empty object."""
        return cls.model_validate(plain(body or {}))

    def to_body(self) -> dict[str, Any]:
        """The Kubernetes shape: camelCase keys, unset optional fields left out, JSON types."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
