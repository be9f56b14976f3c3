//! Timing
