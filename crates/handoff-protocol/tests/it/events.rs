//! Golden files of the event catalog.
