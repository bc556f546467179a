"""Continued pretraining (MLM for encoders, CLM for decoders; :mod:`.run`), its packed streamed data
(:mod:`.data`), MLM-head recovery for headless encoders (:mod:`.head`) and language modules trained
on a frozen base (:mod:`.language_modules`)."""
