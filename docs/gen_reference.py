"""Writes the generated reference pages during ``mkdocs build`` (mkdocs-gen-files)."""

import sys
from pathlib import Path

import mkdocs_gen_files

sys.path.insert(0, str(Path(__file__).parent))
from reference_pages import PAGES  # noqa: E402

for name, page in PAGES.items():
    with mkdocs_gen_files.open(name, "w") as fh:
        fh.write(page())
