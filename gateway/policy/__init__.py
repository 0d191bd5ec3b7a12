"""Policy enforcement: the request and response checks every exchange passes through."""
