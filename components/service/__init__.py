"""A service in one environment: its images, colour slots and linked dependencies."""
