"""The per-language pipeline: a YAML file planned into keyed stages (:mod:`.stages`), each run once
into its own folder (:mod:`.runner`), then published (:mod:`.publish`); ``langgraft demo`` runs the
embedded MiniLM -> Chichewa pipeline (:mod:`.demo`)."""
