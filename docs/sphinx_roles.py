"""Griffe extension for the API reference: the docstrings' Sphinx roles (``:func:`x```,
``:class:`~a.B```...) read as code, ``x`` and ``B``, instead of as raw text."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|exc|obj):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring's roles as inline code (the last dotted part after a ``~``)."""

    def on_instance(self, *, obj, **kwargs) -> None:
        """Called for every object griffe loads: its docstring without roles."""
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(lambda m: f"``{m.group(1)}``", obj.docstring.value)
