//! One error enum for the whole engine.
