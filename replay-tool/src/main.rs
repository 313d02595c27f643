//! replay-tool: Backbone's operator CLI (being written).

fn main() {}
