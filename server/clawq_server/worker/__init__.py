"""Workers: lease a task, run it through the middleware chain, complete it."""
