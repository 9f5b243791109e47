"""pytest fixtures for testing code that uses deployai (filled in by the emulator issue)."""
