//! Reports: long and pivoted result tables, CSV/Markdown/JSON, plots.
