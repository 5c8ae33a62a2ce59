"""All field types specs are built from; each checks a YAML node and returns a plain value.

Step and destination modules import their types from here.
"""

from .containers import FreeMapping, ListOf, StrOrList
from .external import Charset, DirPath, EndpointString, FilePath, Url, resolve_path
from .scalars import Bool, Duration, Enum, Float, Int, Size, String, scalar_value
from .validation import FieldType

__all__ = [
    "Bool",
    "Charset",
    "DirPath",
    "Duration",
    "EndpointString",
    "Enum",
    "FieldType",
    "FilePath",
    "Float",
    "FreeMapping",
    "Int",
    "ListOf",
    "Size",
    "StrOrList",
    "String",
    "Url",
    "resolve_path",
    "scalar_value",
]
