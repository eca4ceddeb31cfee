"""The original work (PR 1255): fixture replay, the published checkpoints, the audit table."""
