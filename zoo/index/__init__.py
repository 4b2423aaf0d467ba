"""The versioned zoo index: stubs, entries, versions and aliases, publishing and querying."""
