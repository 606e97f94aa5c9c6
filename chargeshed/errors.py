"""Domain errors: what a service or lookup refuses, for the web layer to turn into 403 and 404.

Feature packages raise these and never import Flask's `abort`; `web/errors.py` maps them to responses,
while the worker, the gateway and the CLI catch them like any other exception.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class of the refusals below."""


class NotFound(DomainError):
    """No such object, or one the user may not know exists (another tenant's): a 404 on the web."""


class Forbidden(DomainError):
    """The user's role may not do this: a 403 on the web."""
