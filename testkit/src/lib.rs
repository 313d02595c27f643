//! Test helpers for Backbone.
//!
//! (Being written.)
