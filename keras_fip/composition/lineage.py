"""A network's lineage, kept inside its `.keras` file.

Each network a chain of FIP operations produces is saved as a `.keras`
file (`model.save`) that also holds one more member,
`keras_fip_lineage.json`: where the network came from and what it scored.

```json
{"format": "keras_fip.lineage/1",
 "name": "A-sparse70-learnB",
 "parent": "A-sparse70",
 "operation": {"class_name": "LearnTask", "config": {...}, ...},
 "knows": ["A", "B"],
 "measurements": {"accuracy": {"A": 0.93, "B": 0.95},
                  "sparsity": 0.70, "distance_from_parent": 4.2,
                  "seconds": 12.5},
 "seed": 0, "backend": "jax", "keras_fip_version": "0.9.0",
 "created": "2026-12-03T19:40:00+00:00"}
```

`parent` is the parent network's name (`None` for a start), `operation`
the serialized operation (`keras.saving.serialize_keras_object`, rebuilt
by `operation_of`), `knows` the tasks the network has learned. Keras
ignores the member when it loads the file, so the file stays an ordinary
`.keras` file; `read_lineage` reads it back and `write_lineage` puts it in
(replacing an earlier one).

Example:

```python
import keras, numpy as np, tempfile, os
from keras_fip.composition import lineage
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
path = os.path.join(tempfile.mkdtemp(), "a.keras")
model.save(path)
record = lineage.Lineage(name="a", parent=None, operation=None,
                         knows=["A"], measurements={"accuracy": {"A": 0.5}})
lineage.write_lineage(path, record)
assert lineage.read_lineage(path).knows == ["A"]
assert keras.saving.load_model(path).count_params() == 8
```
"""

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
import zipfile

import keras

from keras_fip.version import __version__

MEMBER = "keras_fip_lineage.json"
FORMAT = "keras_fip.lineage/1"


@dataclasses.dataclass
class Lineage:
    """Where a network came from and what it scored.

    Attributes:
        name: the network's name (its file is `<name>.keras`).
        parent: the parent network's name, `None` for a network a chain
            starts from.
        operation: the serialized operation that made it from the parent
            (a dict), `None` for a start.
        knows: the names of the tasks the network has learned, in order.
        measurements: what was measured on the network (a JSON-ready dict:
            accuracy per task, sparsity, distance from the parent, seconds).
        seed: the seed the operation ran with.
        backend: the Keras backend it ran on.
        keras_fip_version: the library version that wrote it.
        created: when it was written (ISO 8601, UTC).

    Example:

    ```python
    record = keras_fip.composition.read_lineage("runs/digits/A.keras")
    record.parent, record.knows, record.measurements
    ```
    """

    name: str
    parent: object
    operation: object
    knows: list
    measurements: dict
    seed: object = None
    backend: str = dataclasses.field(
        default_factory=lambda: keras.backend.backend())
    keras_fip_version: str = __version__
    created: str = dataclasses.field(default_factory=lambda: (
        datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds")))

    def to_json(self):
        """The JSON text stored in the file."""
        return json.dumps({"format": FORMAT, **dataclasses.asdict(self)},
                          indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text, source="the lineage"):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{source} is not valid JSON ({error}).") \
                from error
        found = data.get("format") if isinstance(data, dict) else None
        if found != FORMAT:
            raise ValueError(
                f"{source} is not a keras_fip lineage of format {FORMAT!r} "
                f"(format: {found!r}).")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in ("name", "parent", "operation", "knows",
                                     "measurements") if n not in data)
        if missing:
            raise ValueError(f"{source} lacks {missing}.")
        return cls(**{k: v for k, v in data.items() if k in fields})


def _check_keras_file(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No file at {path}: pass the `.keras` file model.save(path) "
            "wrote.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a `.keras` file (not a zip "
                         "archive); save the model with model.save(path) "
                         "to a path ending in .keras.")


def write_lineage(path, lineage):
    """Puts `lineage` into the `.keras` file at `path` (replacing any).

    Args:
        path: a `.keras` file written by `model.save`.
        lineage: a `Lineage`.
    """
    if not isinstance(lineage, Lineage):
        raise TypeError(f"`lineage` must be a Lineage; got {lineage!r}.")
    _check_keras_file(path)
    text = lineage.to_json()
    with zipfile.ZipFile(path) as archive:
        present = MEMBER in archive.namelist()
    if not present:
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(MEMBER, text)
        return
    # Zip members cannot be replaced in place: copy the others over.
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(suffix=".keras", dir=folder)
    os.close(handle)
    try:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(
                temporary, "w") as target:
            for item in source.infolist():
                if item.filename != MEMBER:
                    target.writestr(item, source.read(item.filename))
            target.writestr(MEMBER, text)
        shutil.move(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def read_lineage(path):
    """The `Lineage` stored in the `.keras` file at `path`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a `.keras` archive, or holds no
            lineage (it was not written by `keras_fip.composition`).
    """
    _check_keras_file(path)
    with zipfile.ZipFile(path) as archive:
        if MEMBER not in archive.namelist():
            raise ValueError(
                f"{path} holds no lineage ({MEMBER}): it was not written by "
                "keras_fip.composition. Start a chain from it with "
                "Composer.start(model, name) instead.")
        text = archive.read(MEMBER).decode("utf-8")
    return Lineage.from_json(text, source=f"The lineage of {path}")


def operation_of(lineage):
    """The operation that made a network, rebuilt from its `Lineage` (or
    from the serialized operation itself); `None` for a start."""
    operation = (lineage.operation if isinstance(lineage, Lineage)
                 else lineage)
    if operation is None:
        return None
    return keras.saving.deserialize_keras_object(operation)
