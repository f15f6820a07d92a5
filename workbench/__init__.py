"""Fleet Workbench: the capacity planner's workbench for ML accelerator fleets."""

__version__ = "0.1.0"
