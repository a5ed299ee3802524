"""The seam with RecBole, in one place: its Config with the plugin's files and checks, data sets and loaders,
model and trainer lookup, the run's building, the assistant (a RecBole model guiding the LLM) and the mends
RecBole 1.2.1 needs on a current stack (:mod:`.compat`)."""
