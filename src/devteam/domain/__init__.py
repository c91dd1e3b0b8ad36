"""Pydantic models and enums shared by every layer."""
