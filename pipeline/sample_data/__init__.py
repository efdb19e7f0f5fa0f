"""The built-in sample corpus (`vatt sample-data`, tests, `make demo`): a generator and its
topic table. A tool of the CLI and the tests; no stage of the pipeline imports it."""
