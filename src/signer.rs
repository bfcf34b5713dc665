//! The signer abstraction (being written).
