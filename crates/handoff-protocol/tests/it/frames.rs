//! Golden files of the Phoenix frames.
