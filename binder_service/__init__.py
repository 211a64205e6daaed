"""The Binder service: repository and DOI providers, resolver, builders and launcher."""
