"""Running what was built: the bundled tritonserver, the process life cycle both servers share,
the supervisor that reloads a dead step, and object-store repositories."""
