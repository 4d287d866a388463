"""test_ui.py's fixtures (the local stack, the receiver, Chromium and a watched page) for the other
browser test modules; each module gets its own stack and receiver (module scope)."""

from tests.browser.test_ui import browser, narrow, playwright, receiver, stack, ui  # noqa: F401 - fixtures, by name
