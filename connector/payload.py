"""Reading a tracker's delivery safely: the shapes we read, checked, and every flaw a `BadPayload`.

Each slice declares the parts of its deliveries it reads as models on `Lenient`: unknown keys are
ignored (not kept: `extra="allow"` copied them and doubled the time of a GitHub delivery, and
nothing reads them), fields trackers omit are optional, but a value of the wrong type is refused
(strict: `"12"` is not a number, `true` is not an integer). `validated` turns pydantic's first
error into one `BadPayload` whose reason names the JSON path, e.g. `issue.number must be a
positive integer, not "abc"`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from connector.errors import BadPayload
from policies.text import parse_time

Model = TypeVar("Model", bound=BaseModel)

# What pydantic's own error types mean in a reason; our validators word theirs themselves.
_REQUIREMENTS = {
    "missing": "is missing",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "string_pattern_mismatch": "is malformed",
}
_SHOWN_TEXT = 80
# The longest name (a login, an account id, a project key) a tracker gives, and what the ledger keeps.
_LONGEST_NAME = 255


class Lenient(BaseModel):
    """A part of a delivery: keys we do not read are ignored, the values we read are typed."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


def validated(model: type[Model], data: object, where: str = "") -> Model:
    """`data` read as `model`; `BadPayload` naming the first flaw's path (below `where`) otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise BadPayload(reason(error.errors(include_url=False)[0], where)) from None
    except RecursionError:  # a value pydantic walks into, nested deeper than Python's stack
        raise BadPayload(f"{where or 'the delivery'} is nested too deeply") from None


def reason(error: ErrorDetails, where: str = "") -> str:
    """`issue.labels[2] must be an object, not "bug"` from one pydantic error."""
    at = json_path(where, error["loc"])
    if error["type"] == "missing":
        return f"{at} is missing"
    requirement = error["msg"] if error["type"] == "shape" else _REQUIREMENTS.get(error["type"], error["msg"])
    return f"{at} {requirement}, not {shown(error['input'])}"


def json_path(where: str, loc: tuple[int | str, ...]) -> str:
    path = where
    for step in loc:
        path += f"[{step}]" if isinstance(step, int) else (f".{step}" if path else step)
    return path or "the delivery"


def shown(value: object) -> str:
    """A value as a reason quotes it: short, ASCII (a lone surrogate would break a log line), and
    never the whole of a big list or object."""
    if isinstance(value, str):
        return json.dumps(value if len(value) <= _SHOWN_TEXT else value[:_SHOWN_TEXT] + "...")
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 64 else "a huge integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def shape_error(requirement: str) -> PydanticCustomError:
    """Raised by a field's own validator; `reason` quotes `requirement` as it is."""
    return PydanticCustomError("shape", requirement)


def _time(value: object) -> dt.datetime | None:
    """A tracker's timestamp: ISO 8601 text or epoch milliseconds, both read by `parse_time`.

    A value of another type is refused. Text or a number that names no plausible time reads as
    no time (`None`), as before: Jira Server has been seen writing `2019-1-30 15:51:34,870`.
    """
    if value is None:
        return None
    if isinstance(value, str | float | int) and not isinstance(value, bool):
        return parse_time(value)
    raise shape_error("must be an ISO 8601 time or epoch milliseconds")


def _identifier(value: object) -> str:
    """An id as the trackers write them: a number on GitHub, a numeric string on Jira."""
    if value is None:
        return ""
    if isinstance(value, str) and len(value) <= _LONGEST_NAME and _storable(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64:
        return str(value)
    raise shape_error(f"must be an id (an integer, or a string of at most {_LONGEST_NAME} characters)")


def bounded_name(longest: int = _LONGEST_NAME) -> PlainValidator:
    """A login, a person's name, an account id, a project key, an event's name: text a tracker
    names something by, which the service keeps in a column of `longest` characters."""

    def validate(value: object) -> str:
        if not isinstance(value, str):
            raise shape_error("must be a string")
        if len(value) > longest:
            raise shape_error(f"must be at most {longest} characters")
        if not _storable(value):
            raise shape_error("must be text without NUL characters or lone surrogates")
        return value

    return PlainValidator(validate)


def _storable(text: str) -> bool:
    """No NUL (PostgreSQL refuses it in text) and no lone surrogate (which no database can encode)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Time = Annotated[dt.datetime | None, PlainValidator(_time)]
Identifier = Annotated[str, PlainValidator(_identifier)]
Name = Annotated[str, bounded_name()]
