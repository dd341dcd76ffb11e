"""The lakehouse write path: which day owns each input line (`ownership`), bronze over whole
files and its ledger (`ingest`), the lake's tables and partition replacement (`lake`), and file
operations on local disk or `gs://` (`lakefs`)."""
