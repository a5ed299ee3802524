"""Side-by-side comparisons: several models and variants, several seeds, one report."""
