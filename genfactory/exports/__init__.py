"""Exports sellers upload from: Excel workbooks, stock-site CSVs, image ZIPs, HTML reports.

Each writer reads the store through `storage.repository` and applies the stock rules of
`genfactory.stock`; `run_export` picks the writer and the place.
"""

from genfactory.exports.run import ExportFormat, ExportResult, run_export

__all__ = ["ExportFormat", "ExportResult", "run_export"]
