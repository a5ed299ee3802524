"""The maths of MSL with no model framework in it: the title trie, the losses and ATS, constrained beam
search over a language-model protocol, and batching. Imports torch and numpy only (tests/test_layout.py)."""
