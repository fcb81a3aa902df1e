//! Stage 8, encode: PostgreSQL values to JSON (being written).
