"""Adaptation: continued pretraining (:mod:`langgraft.adapt.pretrain`) and the per-language pipeline
that chains every stage (:mod:`langgraft.adapt.pipeline`); :mod:`langgraft.adapt.cli` is the
``langgraft`` command."""
