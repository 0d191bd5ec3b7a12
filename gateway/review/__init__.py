"""Human review of escalated exchanges: the queue where held requests and replies wait for a decision."""
