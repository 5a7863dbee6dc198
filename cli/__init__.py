"""ufd command-line tools (typer apps behind the console scripts)."""
