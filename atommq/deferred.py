"""dataset, with the alembic it imports for Database.op (migrations, which AtomMQ never runs)
left until something uses it: alembic, with Mako and Pygments, was a fifth of a CGI request.

Knows nothing of AtomMQ: no settings, no SQL, no HTTP. Import dataset from here, not directly.
"""

import importlib
import importlib.util
import sys
import types
from typing import Any

# Where dataset.database imports alembic from (`from alembic.migration import MigrationContext`,
# `from alembic.operations import Operations`). A LazyLoader module would not do: `from M import
# N` reads N at once, which runs the module, and M's package (`alembic`) with it.
ALEMBIC_MODULES = ("alembic.migration", "alembic.operations")


class Deferred:
    """Stands for `module.name`, imported at its first use: a call, an attribute, isinstance."""

    __slots__ = ("_module", "_name")

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name

    def resolve(self) -> Any:
        return getattr(importlib.import_module(self._module), self._name)

    def __getattr__(self, attr: str) -> Any:
        if attr in self.__slots__:  # not set yet (a copy): no recursion
            raise AttributeError(attr)
        return getattr(self.resolve(), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self.resolve())

    def __repr__(self) -> str:
        return f"<deferred {self._module}.{self._name}>"


def _stand_in(module: str) -> types.ModuleType:
    """A module of Deferred names, whatever dataset imports from `module` (PEP 562)."""

    def deferred(name: str) -> Deferred:
        if name.startswith("__"):  # __path__, __file__ ...: a plain module, not a package
            raise AttributeError(name)
        return Deferred(module, name)

    stand_in = types.ModuleType(module, "Stands in while dataset is imported; see atommq/deferred.py")
    stand_in.__dict__["__getattr__"] = deferred
    return stand_in


def _saves_something() -> bool:
    """Not if dataset or alembic is imported already (another app in this process), nor if
    alembic is missing: then importing dataset fails as it would without this module."""
    imported = {"dataset.database", "alembic", *ALEMBIC_MODULES} & sys.modules.keys()
    return not imported and importlib.util.find_spec("alembic") is not None


if _saves_something():
    _stand_ins = {module: _stand_in(module) for module in ALEMBIC_MODULES}
    sys.modules.update(_stand_ins)
    try:
        import dataset as dataset
    finally:
        # Whoever imports alembic from now on (dataset's Deferred names too) gets the real one.
        for module, stand_in in _stand_ins.items():
            if sys.modules.get(module) is stand_in:
                del sys.modules[module]
else:
    import dataset as dataset
