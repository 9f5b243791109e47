"""A local DeployAI emulator and test kit (filled in by the emulator issue)."""
