"""HTTP in and out: validated input to a service call, its result to a status
code and a response shape."""
