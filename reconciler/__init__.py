"""litellm-reconciler: GitOps for the users and teams of a LiteLLM proxy."""

__version__ = "0.1.0"
