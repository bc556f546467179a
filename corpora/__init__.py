"""langgraft stage package."""
