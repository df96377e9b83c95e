"""GitOps platform tooling."""
