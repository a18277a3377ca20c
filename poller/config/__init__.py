"""Stage 0, configuration: settings merged from defaults, TOML, environment and flags."""
