"""Rendered pieces of hot pages, kept per process and keyed by everything they are made from.

A key names the template and every input it reads (the locale, the database values, the path when a
link carries it), so an entry is never stale: a changed input is a different key, and the old entry
ages out of the bounded LRU. Nothing personal (CSRF token, session, balance) goes into a cached piece
unless it is part of the key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

from flask import Flask, current_app, render_template
from flask_babel import get_locale
from markupsafe import Markup

DEFAULT_SIZE = 1024
T = TypeVar("T")


class RenderCache:
    """A bounded, thread-safe LRU (of rendered text, or of what a page is rendered from)."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> T:
        """The entry for `key`, made (outside the lock) and kept when absent (a None is made each time)."""
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value

    def get(self, key: Hashable):
        """The entry for `key`, or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: object) -> None:
        """Keep `value` under `key`, dropping the least recently used entry when full."""
        with self._lock:
            self._items[key] = value
            if len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def init_app(app: Flask) -> None:
    """One cache per app (per worker process); templates get `fragment`."""
    app.extensions["render_cache"] = RenderCache(int(app.config.get("RENDER_CACHE_SIZE") or DEFAULT_SIZE))
    app.jinja_env.globals["fragment"] = fragment


def cached_render(template: str, vary: tuple, **context) -> Markup:
    """render_template(template, **context), reused while the context and `vary` stay the same.

    The context values are part of the key (they must be hashable: tuples, frozen dataclasses);
    `vary` holds whatever else the template reads (the locale, the request path, the signed-in state).
    """
    key = (template, vary, tuple(context.items()))
    return render_cache().get_or_make(key, lambda: Markup(render_template(template, **context)))


def fragment(template: str, **context) -> Markup:
    """For templates: a partial rendered once per locale and context, e.g.
    `{{ fragment("resident/_port_card.html", port=port, shed=shed, state=state) }}`.

    Such a partial reads only what it is given (never request, session or current_user).
    """
    return cached_render(template, (str(get_locale()),), **context)


def render_cache() -> RenderCache:
    """The current app's cache."""
    return current_app.extensions["render_cache"]
