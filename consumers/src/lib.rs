//! Backbone consumer runtime (being written).
