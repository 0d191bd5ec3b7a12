"""Rate limits and token budgets: how much each app, tenant and model may use, across every instance."""
