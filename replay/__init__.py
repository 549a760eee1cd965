"""Reading sessions back: columnar export (Parquet), and later the replay-and-verify engine and the
Gymnasium environments that fold the same state machines in-process."""

from .export import ExportError, ExportSchemaError, ExportSummary, export_parquet, export_schema

__all__ = ["ExportError", "ExportSchemaError", "ExportSummary", "export_parquet", "export_schema"]
