"""Jira (Cloud and Data Center): its webhook normaliser, REST calls, formats, markers and workflow export."""
