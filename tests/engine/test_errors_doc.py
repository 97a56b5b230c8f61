"""The error tree drawn in engine/errors.py's docstring is the real one."""

import inspect
import re

import engine.errors as errors


def test_docstring_draws_every_error_under_its_parent():
    drawn = {}
    stack: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        match = re.match(r"^( +)([A-Z]\w+Error)\s+(\w+)$", line)
        if not match:
            continue
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[match.group(2)] = (stack[-1][1] if stack else None, match.group(3))
        stack.append((depth, match.group(2)))
    real = {c.__name__: (None if c is errors.StudioError else c.__bases__[0].__name__, c.code)
            for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, errors.StudioError)}
    assert drawn == real
