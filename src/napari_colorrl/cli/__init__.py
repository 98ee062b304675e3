"""The ``colorrl`` command line (``main.py``), one module per subcommand: ``train``, ``predict``,
``evaluate``, ``export``, ``demo``. Each module has ``add_parser(subparsers)`` and ``run(args)``.
"""


class UsageError(Exception):
    """A problem with the user's input, reported as one line."""
