"""How models are evaluated: the plugin's protocol (what counts as a hit, seen items) and per-user records."""
