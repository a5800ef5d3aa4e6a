"""``lmforge report RUN_DIR``: one self-contained HTML page (and the same as Markdown) about a run,
built only from the files its stages wrote (see :mod:`lmforge.reporting.facts`)."""
