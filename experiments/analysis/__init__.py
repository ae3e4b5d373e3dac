"""Analysis: reads records (results.json, sweep runs) and writes tables and
plots. Imports the framework's records, statistics and grid, never the
training loop or an entry point."""
