//! Integration tests of `backbone-schemas`: one binary, one module per
//! concern.

mod decode_errors;
mod evolution;
mod lock;
mod props;
mod roundtrip;
mod wire_doc;
