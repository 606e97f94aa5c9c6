"""The back office's login decorator: signed-in staff of given roles (the web side of accounts.access)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort
from flask_login import current_user

from chargeshed.extensions import login_manager


def staff_required(*roles: str) -> Callable:
    """Decorator: signed-in staff with one of `roles`; others get the login page or 403."""

    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        wrapped.staff_roles = roles  # read by the role/tenant matrix test
        return wrapped

    return decorate
