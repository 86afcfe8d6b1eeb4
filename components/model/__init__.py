"""Typed stack configuration, the service manifest and the validation helpers they share."""
