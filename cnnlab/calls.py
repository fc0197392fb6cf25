"""Modules that are also functions. `cnnlab.train(...)` trains and returns a Run, while `cnnlab.train.config` stays
the training package's module; likewise `cnnlab.transfer(...)` and `cnnlab.export(run)`. A package cannot hold both a
function and a subpackage under one name (importing the subpackage sets the attribute), so the module itself is
made callable: its class becomes a ModuleType subclass with `__call__`, which Python allows for any module."""

from __future__ import annotations

import sys
import types


def callable_module(name: str, function) -> None:
    """Make the module `name` callable: calling it calls `function` (its docstring says how)."""
    module = sys.modules[name]
    module.__class__ = type("CallableModule", (types.ModuleType,), {"__call__": staticmethod(function),
                                                                     "__module__": __name__})
