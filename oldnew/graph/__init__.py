"""Graph builders, state and routing."""
