"""Recipes: one linear file per flow (pretrain, finetune, transfer), composing the training library."""
