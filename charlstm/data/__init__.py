"""Text in, integer ids out: corpora, vocabularies, the encoded cache and its streaming encoder, batches, downloads
and the bundled language corpus. JAX-free; imports only the top-level core (errors, resources, config)."""
