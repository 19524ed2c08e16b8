"""The command-line client of a manager's API: ``gdts job ...``, ``worker ls``, ``login``,
``export`` and ``apply`` (see gdts.cli.commands)."""
