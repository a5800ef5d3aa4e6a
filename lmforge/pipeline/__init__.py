"""``lmforge run``: the stages of one config in order, with skip and resume (see :mod:`lmforge.recipes.run`)."""
