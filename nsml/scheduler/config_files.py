"""Reading the admin's YAML or JSON files (the inventory, the policy) with one clear error."""

import json
from pathlib import Path

from nsml.core.errors import InvalidInput


def read_config(path: Path, what: str):
    """The parsed content of `path` (JSON for .json, else YAML); InvalidInput naming `what`
    ("the inventory", "the policy") and the file for anything unreadable or malformed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput(f"Cannot read {what} {path}: {exc.strerror or exc}.") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"{what[0].upper()}{what[1:]} {path} is not valid JSON: {exc}.") from None
    import yaml  # the AutoML configs' format too

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{what[0].upper()}{what[1:]} {path} is not valid YAML: {str(exc).splitlines()[0]}.") from None
