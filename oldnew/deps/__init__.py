"""A project's dependencies: declared in its manifest, locked, installed once, validated against.

- :mod:`.manifest` reads what ``pyproject.toml`` and ``package.json`` declare, and refuses what
  cannot be locked;
- :mod:`.python` (uv) and :mod:`.node` (npm) resolve a manifest into its lock and install a
  lock, fetching with the network but running no package's code;
- :mod:`.store` and :mod:`.envs` keep environments in a cache keyed by the lock's hash and
  describe one to the gates as a :class:`~oldnew.sandbox.ProjectEnv`;
- :mod:`.ledger` records who asked for each package and who approved it.
"""
