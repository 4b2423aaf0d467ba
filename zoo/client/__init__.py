"""The zoo client: search, download into a Hub-style cache, load, validate, diff.

Nothing is imported here: `zoo.client.api` holds the public functions.
"""
