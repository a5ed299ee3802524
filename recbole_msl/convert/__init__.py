"""Converters from raw public data sets to RecBole atomic files plus a ready YAML, in one call.

    from recbole_msl.convert import convert
    report = convert("amazon2018", "dataset", "books", reviews="Books_5.json.gz", meta="meta_Books.json.gz",
                     k_core=5)

Sources: amazon2014, amazon2018, amazon2023, generic (named CSV/TSV columns) and sliding-window
(the MSL/BIGRec CSV splits, written as RecBole benchmark files). The command line is
``python -m recbole_msl.convert <source> --help``.
"""

from .pipeline import SOURCES, convert
from .report import ConversionReport, Step, TitleStats, format_report

__all__ = ["SOURCES", "ConversionReport", "Step", "TitleStats", "convert", "format_report"]
