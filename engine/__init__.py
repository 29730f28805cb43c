"""codescaler.engine: export and build of inference engines, and the engine-directory format."""
