"""__NAME__: a sluice plugin. It passes every record through unchanged and
fails empty records as `invalid`; edit `process` to do real work."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def init(self, params):
        """Called once per instance with the pipeline's `params` (or
        `sluice plugin run --config k=v`). This plugin takes none."""
        for key, _ in params:
            raise Err(f"__NAME__: unknown parameter `{key}`")

    def process(self, rec):
        """Called once per record: a list of outputs, or raise Err(ProcessError)."""
        if not rec.value:
            raise Err(types.ProcessError(kind=types.ErrorKind.INVALID, message="empty record"))
        return [types.Output(route=None, key=rec.key, value=rec.value, headers=rec.headers)]
