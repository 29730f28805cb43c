"""The package's version, in a module of its own so that every layer can read it without importing the
package's ``__init__`` (which imports the model). It must equal ``pyproject.toml``'s ``version``
(tests/test_small_things.py checks it)."""

__version__ = "0.1.0"
