//! Configuration (filled in by the store/service work).
