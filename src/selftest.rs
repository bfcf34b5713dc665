//! Conformance runner over upstream vector files (being written).
