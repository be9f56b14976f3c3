//! Phoenix frames
