"""Sandboxed code runs (the ``code`` node, SPEC section 9): warm pools of separate processes,
one pool per language, talked to over pipes. ``pool.py`` is the entry point; ``jail/`` holds
the Python runner (stdlib only: it runs in ``python -I -S``) and ``deno_runner.js`` the
JavaScript one. Nothing here is imported by this ``__init__``: the Python runner imports
``jail`` through it and must stay light."""
