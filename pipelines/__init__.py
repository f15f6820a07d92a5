"""Sources -> canonical tables: parse, map columns, validate, quarantine. Never forecasts."""
