//! Ed25519-Blake2b and the hashes of the protocol (spec §5).
