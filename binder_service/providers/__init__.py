"""Content providers of the Binder service: one module per kind of source (git hosting,
archived records), each resolving a `RepoSpec` to an immutable `Resolved` and saying how
the fetch worker gets its content. `base` holds what they share."""
