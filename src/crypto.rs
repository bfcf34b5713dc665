//! Pure PowerAuth cryptography (being written).
