"""Fleet Workbench test suite."""
