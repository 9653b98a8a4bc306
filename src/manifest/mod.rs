//! Manifest: TOML schema, loading with spans, `extends`, grid operators and validation.
