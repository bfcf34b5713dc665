//! Persistent state (being written).
