//! TODO(helper): routing
