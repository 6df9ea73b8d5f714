"""Tenancy: businesses, their people, the agencies that staff them, and the fail-closed scope."""
