"""``python -m rlaif.cli``, as the ``rlaif`` script."""

from rlaif.cli.main import app

app()
