"""The training library: small pieces the recipes (lmforge.recipes) compose; no flow lives here."""
