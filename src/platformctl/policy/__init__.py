"""The policy gate: project rules, checkov, and the exceptions file."""
