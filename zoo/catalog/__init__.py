"""The browsable catalog: static pages built from the index (`zoo catalog build`)."""
