//! Socket protocol tests.
