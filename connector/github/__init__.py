"""GitHub Issues: its webhook normaliser, its API connector and the issue-form export."""
