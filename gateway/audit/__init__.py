"""The audit trail: one record per exchange, written off the request's critical path."""
